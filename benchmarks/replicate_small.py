"""A small-scale replication of the DFT comparison on the embedded model (CPU, < 60 min).

Probe Gemma-3-270M once, then train TFT, DFT-logits, DFT-feature and the LC-only /
ET-only ablations with the same seed, steps, data and LoRA settings on the shipped
English-Chinese instruction data; evaluate the base model and every run on the
held-out instructions (NLL of the Chinese and English responses) and on the shipped
offline tasks (multiple choice and extractive QA, zh and en); write one results
table, paired differences against TFT with standard errors, and the compare figure
(base vs TFT vs DFT-logits latent-language curves).

Usage: python benchmarks/replicate_small.py [--out runs/replicate] [--steps 60] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

VARIANTS = {  # name -> (LC signal, ET signal)
    "TFT": ("off", "off"),
    "DFT-logits": ("logits", "logits"),
    "DFT-feature": ("feature", "feature"),
    "LC-only (feature)": ("feature", "off"),
    "ET-only (logits)": ("off", "logits"),
}


def paired(per_model: dict[str, list[float]], reference: str) -> pd.DataFrame:
    """Mean difference to ``reference`` over the same held-out examples, with its standard error."""
    ref = np.asarray(per_model[reference])
    rows = []
    for name, values in per_model.items():
        diff = np.asarray(values) - ref
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if name != reference else 0.0
        rows.append({"model": name, "diff_vs_" + reference: diff.mean(), "se": se,
                     "beyond_2se": bool(abs(diff.mean()) > 2 * se) if name != reference else False})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/replicate")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--eval-limit", type=int, default=40, help="documents per shipped task (0 = all)")
    parser.add_argument("--quick", action="store_true", help="a few steps and items: checks the pipeline only")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    steps = 3 if args.quick else args.steps
    limit = 8 if args.quick else None
    eval_limit = 8 if args.quick else (args.eval_limit or None)

    from dftlens import load_model
    from dftlens.analysis.compare import compare_models
    from dftlens.analysis.run import ProbeConfig, run_probe
    from dftlens.dft.config import TrainConfig
    from dftlens.dft.trainer import train
    from dftlens.evaluation.heldout import heldout_nll
    from dftlens.evaluation.runner import evaluate_models

    probe_cfg = ProbeConfig(pairs=[("fr", "zh"), ("de", "ja")], tasks=["translation"],
                            max_items=8 if args.quick else 24, max_sentences=12 if args.quick else 40)
    probe = run_probe(load_model("gemma3-270m"), probe_cfg)
    probe.save(out / "probe", overwrite=True)
    layers = out / "probe" / "layers.json"
    print(f"probe: LC {probe.choice.lc_layer}, ET {probe.choice.et_layer}  ({time.perf_counter() - started:.0f} s)")

    checkpoints = {"base": "gemma3-270m"}
    logs = []
    for name, (lc, et) in VARIANTS.items():
        cfg = TrainConfig(out=str(out / name.split()[0]), model="gemma3-270m", lang=args.lang, layers=str(layers),
                          lc=lc, et=et, lora=True, steps=steps, batch_size=4, max_length=256, seed=0,
                          limit=limit)
        result = train(cfg, overwrite=True)
        checkpoints[name] = str(result.final)
        logs.append(result.to_dataframe().assign(model=name))
        print(f"trained {name} ({time.perf_counter() - started:.0f} s)")
    pd.concat(logs).to_csv(out / "train_logs.csv", index=False)

    rows, per_example = [], {lang: {} for lang in (args.lang, "en")}
    for name, path in checkpoints.items():
        lm = load_model(path)
        for lang in (args.lang, "en"):
            res = heldout_nll(lm, None, args.lang, english=lang == "en")
            per_example[lang][name] = res["per_example"]
            se = float(np.std(res["per_example"], ddof=1) / np.sqrt(res["examples"]))
            rows.append({"model": name, "task": "heldout_instructions", "language": lang, "metric": "nll",
                         "value": res["nll"], "stderr": se})
        del lm
    evaluation = evaluate_models(list(checkpoints.values()), tasks=("shipped",), langs=[args.lang, "en"],
                                 limit=eval_limit)
    frame = evaluation.frame.copy()
    frame["model"] = frame["model"].map({v: k for k, v in checkpoints.items()}).fillna(frame["model"])
    results = pd.concat([pd.DataFrame(rows), frame[["model", "task", "language", "metric", "value", "stderr"]]])
    results.to_csv(out / "results.csv", index=False)
    table = results.pivot_table(index=["task", "language", "metric"], columns="model", values="value",
                                sort=False)[list(checkpoints)]
    pd.set_option("display.width", 200)
    print(table.round(3).to_string())
    for lang, values in per_example.items():
        diffs = paired(values, "TFT")
        diffs.to_csv(out / f"heldout_paired_{lang}.csv", index=False)
        print(f"\nheld-out NLL ({lang}), paired difference to TFT over the same examples:")
        print(diffs.round(4).to_string(index=False))

    compare = compare_models([checkpoints["base"], checkpoints["TFT"], checkpoints["DFT-logits"]],
                             probe_cfg, labels=["base", "TFT", "DFT-logits"], layers=layers)
    compare.save(out / "compare", overwrite=True)
    print(compare.at_layers().to_string(index=False))
    print(f"\nruntime {time.perf_counter() - started:.0f} s; outputs in {out}")


if __name__ == "__main__":
    main()
