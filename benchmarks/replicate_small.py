"""A small-scale replication of the DFT comparison on the embedded model (CPU).

Probe Gemma-3-270M once, then train TFT, DFT-logits, DFT-feature (one run per
``--feature-norms`` variant) and the LC-only (feature) / ET-only (logits)
ablations with the same seed, steps, data and LoRA settings on the shipped
English-Chinese instruction data; evaluate the base model and every run on the
held-out instructions (NLL of the Chinese and English responses) and on the
shipped offline tasks (multiple choice and extractive QA, zh and en); write one
results table, paired differences against TFT with standard errors, and the
compare figure (base vs TFT vs DFT-logits latent-language curves).

``--sweep-et 6,9,12,15``: the ET-layer sweep (the paper swept 5..30 on LLaMA-2-7B).
At each layer j one ET-only (logits) run, LC off, so that only j changes; same
seed, data and steps as every other run. Each is scored on the held-out NLL (zh
and English side) with paired standard errors against TFT; ``sweep.csv`` and
``sweep.html`` (plotly: NLL difference to TFT +- 2 paired SE per layer).

Usage: python benchmarks/replicate_small.py [--out runs/replicate] [--steps 60] [--eval-limit 0]
       [--feature-norms none,standardize] [--feature-weight 1] [--sweep-et 6,9,12,15] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

def variants(norms: list[str], lc_only: bool = True, feature_weight: float = 1.0) -> dict[str, tuple[str, str, str]]:
    """name -> (LC signal, ET signal, feature norm); LC-only uses the last norm listed.

    ``feature_weight`` != 1 (the feature losses' ``w_lc``/``w_et``) is named in the feature runs' names.
    """
    table = {"TFT": ("off", "off", "none"), "DFT-logits": ("logits", "logits", "none")}
    weight = "" if feature_weight == 1.0 else f" w={feature_weight:g}"  # no comma: --runs splits on commas
    for norm in norms:
        name = f"DFT-feature ({norm}{weight})" if len(norms) > 1 or weight else "DFT-feature"
        table[name] = ("feature", "feature", norm)
    if lc_only:
        table[f"LC-only (feature, {norms[-1]}{weight})"] = ("feature", "off", norms[-1])
    table["ET-only (logits)"] = ("off", "logits", "none")
    return table


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


def sweep_figure(sweep: pd.DataFrame, path: Path) -> None:
    """NLL difference to TFT (nats/token) at each ET layer, +- 2 paired SE; the y axis fits the bars."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for lang, frame in sweep.groupby("language", sort=False):
        fig.add_trace(go.Scatter(x=frame["et_layer"], y=frame["diff_vs_TFT"], mode="lines+markers", name=lang,
                                 error_y=dict(type="data", array=2 * frame["se"], visible=True)))
    low = float((sweep["diff_vs_TFT"] - 2 * sweep["se"]).min())
    high = float((sweep["diff_vs_TFT"] + 2 * sweep["se"]).max())
    low, high = min(low, 0.0), max(high, 0.0)
    pad = 0.08 * (high - low or 1.0)
    fig.add_hline(y=0, line_dash="dot", annotation_text="TFT")
    fig.update_layout(title="ET-layer sweep: held-out NLL, ET-only (logits) minus TFT (paired, +- 2 SE)",
                      xaxis_title="ET layer j", yaxis_title="NLL difference to TFT (nats per token)",
                      yaxis_range=[low - pad, high + pad], template="plotly_white")
    fig.update_xaxes(tickvals=list(sweep["et_layer"].unique()))
    fig.write_html(path, include_plotlyjs=True)  # self-contained: opens offline


def write_sweep(per_example: dict[str, dict[str, list[float]]], layers: list[int], out: Path) -> None:
    """The ET-layer sweep: held-out NLL per ET layer and side, paired against TFT (sweep.csv, sweep.html)."""
    rows = []
    for side, values in per_example.items():
        diffs = paired(values, "TFT").set_index("model")
        for j in layers:
            name = f"ET-only j={j}"
            rows.append({"et_layer": j, "language": side, "nll": float(np.mean(values[name])),
                         "diff_vs_TFT": diffs.loc[name, "diff_vs_TFT"], "se": diffs.loc[name, "se"],
                         "beyond_2se": diffs.loc[name, "beyond_2se"]})
    sweep = pd.DataFrame(rows)
    sweep.to_csv(out / "sweep.csv", index=False)
    sweep_figure(sweep, out / "sweep.html")
    print("\nET-layer sweep (ET-only logits; LC off), held-out NLL and paired difference to TFT:")
    print(sweep.round(4).to_string(index=False))


def combine(dirs: list[Path], out: Path, lang: str) -> None:
    """Paired tables and the ET sweep from the held-out scores of several (partial) runs."""
    out.mkdir(parents=True, exist_ok=True)
    per_example = {}
    for side in (lang, "en"):
        merged = {}
        for d in dirs:
            path = d / f"heldout_per_example_{side}.csv"
            if path.exists():
                merged.update(pd.read_csv(path).to_dict(orient="list"))
        if "ET-only (logits)" in merged:
            merged.setdefault("ET-only j=12", merged["ET-only (logits)"])
        per_example[side] = merged
    pd.set_option("display.width", 250)
    for side, values in per_example.items():
        frame = pd.DataFrame({"model": list(values), "nll_mean_of_examples": [np.mean(v) for v in values.values()],
                              "nll_se": [np.std(v, ddof=1) / np.sqrt(len(v)) for v in values.values()]})
        diffs = paired(values, "TFT")  # its "se": the paired SE, as in a single run's heldout_paired_<lang>.csv
        table = frame.merge(diffs, on="model")
        table.to_csv(out / f"heldout_paired_{side}.csv", index=False)
        print(f"\nheld-out NLL ({side}): mean of per-example NLL +- SE, paired difference to TFT +- paired SE")
        print(table.round(4).to_string(index=False))
    layers = sorted(int(n.split("=")[1]) for n in per_example[lang] if n.startswith("ET-only j="))
    if layers:
        write_sweep(per_example, layers, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/replicate")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--eval-limit", type=int, default=40, help="documents per shipped task (0 = all)")
    parser.add_argument("--feature-norms", default="none", help="comma list: one DFT-feature run per --feature-norm")
    parser.add_argument("--feature-weight", type=float, default=1.0,
                        help="w_lc and w_et of the feature runs (DFT-feature, LC-only); 1 = the paper's")
    parser.add_argument("--sweep-et", default="", help="comma list of ET layers: one ET-only (logits) run each")
    parser.add_argument("--lc-layer", type=int, default=None, help="with --et-layer: skip the probe (and the compare figure)")
    parser.add_argument("--et-layer", type=int, default=None)
    parser.add_argument("--no-lc-only", action="store_true", help="skip the LC-only (feature) ablation")
    parser.add_argument("--no-shipped", action="store_true", help="held-out NLL only (no shipped tasks)")
    parser.add_argument("--runs", default="", help="comma list: train and score only these runs (by name)")
    parser.add_argument("--no-base", action="store_true", help="do not score the base model")
    parser.add_argument("--combine", default="", help="comma list of output dirs of earlier (partial) runs: "
                        "merge their held-out scores into --out's paired tables and sweep; trains nothing")
    parser.add_argument("--quick", action="store_true", help="a few steps and items: checks the pipeline only")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    if args.combine:
        combine([Path(d) for d in args.combine.split(",")], out, args.lang)
        return
    steps = 3 if args.quick else args.steps
    limit = 8 if args.quick else None
    eval_limit = 8 if args.quick else (args.eval_limit or None)
    norms = [n.strip() for n in args.feature_norms.split(",") if n.strip()]
    sweep_layers = [int(j) for j in args.sweep_et.split(",") if j.strip()]

    from dftlens import load_model
    from dftlens.analysis.compare import compare_models
    from dftlens.analysis.run import ProbeConfig, run_probe
    from dftlens.dft.config import TrainConfig
    from dftlens.dft.trainer import train
    from dftlens.evaluation.heldout import heldout_nll
    from dftlens.evaluation.runner import evaluate_models

    probe_cfg = ProbeConfig(pairs=[("fr", "zh"), ("de", "ja")], tasks=["translation"],
                            max_items=8 if args.quick else 24, max_sentences=12 if args.quick else 40)
    if args.lc_layer is not None and args.et_layer is not None:
        layers, lc_layer, et_layer = None, args.lc_layer, args.et_layer
        print(f"given layers (no probe): LC {lc_layer}, ET {et_layer}")
    else:
        probe = run_probe(load_model("gemma3-270m"), probe_cfg)
        probe.save(out / "probe", overwrite=True)
        layers = out / "probe" / "layers.json"
        lc_layer, et_layer = probe.choice.lc_layer, probe.choice.et_layer
        print(f"probe: LC {lc_layer}, ET {et_layer}  ({time.perf_counter() - started:.0f} s)")
    print(f"settings: LoRA r 16, lr 2e-4, batch 4, max length 256, seed 0, {steps} steps, "
          f"feature norms {norms}, ET sweep {sweep_layers}, eval limit {eval_limit}", flush=True)

    table = variants(norms, lc_only=not args.no_lc_only, feature_weight=args.feature_weight)
    # Most informative first (every run is scored as soon as it is trained): TFT, the normalised
    # feature variants, ET-only at the probe's layer, the sweep, then the rest.
    order = ["TFT"] + [n for n in table if n.startswith("DFT-feature") and "none" not in n] + ["ET-only (logits)"]
    runs = {name: (*table[name], None) for name in order if name in table}
    for j in sorted(sweep_layers, key=lambda j: (j != et_layer, -abs(j - et_layer))):
        runs[f"ET-only j={j}"] = ("off", "logits", "none", j)
    runs.update({name: (*spec, None) for name, spec in table.items() if name not in runs})
    checkpoints = {"base": "gemma3-270m"}
    logs, rows, per_example = [], [], {lang: {} for lang in (args.lang, "en")}

    def score(name: str, path: str) -> None:
        """Held-out NLL (zh and English side) right after training: partial results survive a cut."""
        lm = load_model(path)
        for lang in (args.lang, "en"):
            res = heldout_nll(lm, None, args.lang, english=lang == "en")
            per_example[lang][name] = res["per_example"]
            se = float(np.std(res["per_example"], ddof=1) / np.sqrt(res["examples"]))
            rows.append({"model": name, "task": "heldout_instructions", "language": lang, "metric": "nll",
                         "value": res["nll"], "stderr": se})
            pd.DataFrame(per_example[lang]).to_csv(out / f"heldout_per_example_{lang}.csv", index=False)
        pd.DataFrame(rows).to_csv(out / "heldout.csv", index=False)
        line = "; ".join(f"{r['language']} {r['value']:.4f}" for r in rows[-2:])
        if "TFT" in per_example[args.lang] and name != "TFT":
            diffs = {lang: paired({"TFT": v["TFT"], name: v[name]}, "TFT").iloc[1] for lang, v in per_example.items()}
            line += " | vs TFT " + "; ".join(f"{lang} {d['diff_vs_TFT']:+.4f} +- {d['se']:.4f}"
                                              for lang, d in diffs.items())
        print(f"held-out NLL {name}: {line} ({time.perf_counter() - started:.0f} s)", flush=True)
        del lm

    out.mkdir(parents=True, exist_ok=True)
    if not args.no_base:
        score("base", "gemma3-270m")
    chosen = [n.strip() for n in args.runs.split(",") if n.strip()]
    for name, (lc, et, norm, sweep_j) in runs.items():
        if chosen and name not in chosen:
            continue
        if sweep_j is not None and sweep_j == et_layer and "ET-only (logits)" in checkpoints:
            checkpoints[name] = checkpoints["ET-only (logits)"]  # the same run: same seed, data, steps, layer
            for lang in per_example:
                per_example[lang][name] = per_example[lang]["ET-only (logits)"]
            continue
        slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "").replace("=", "")
        cfg = TrainConfig(out=str(out / slug), model="gemma3-270m", lang=args.lang, lc_layer=lc_layer,
                          et_layer=sweep_j if sweep_j is not None else et_layer, lc=lc, et=et, feature_norm=norm,
                          w_lc=args.feature_weight if lc == "feature" else 1.0,
                          w_et=args.feature_weight if et == "feature" else 1.0,
                          lora=True, steps=steps, batch_size=4, max_length=256, seed=0, limit=limit)
        result = train(cfg, overwrite=True, progress=False)
        checkpoints[name] = str(result.final)
        logs.append(result.to_dataframe().assign(model=name))
        pd.concat(logs).to_csv(out / "train_logs.csv", index=False)
        print(f"trained {name} ({time.perf_counter() - started:.0f} s)", flush=True)
        score(name, str(result.final))
    print(f"held-out NLL done ({time.perf_counter() - started:.0f} s)", flush=True)
    if chosen or args.no_base:
        print(f"partial run: merge with --combine ({time.perf_counter() - started:.0f} s)")
        return
    checkpoints = {"base": checkpoints["base"], **{n: checkpoints[n] for n in
                   ["TFT", *[m for m in table if m != "TFT"], *[m for m in runs if m.startswith("ET-only j=")]]}}
    for lang in per_example:
        per_example[lang] = {n: per_example[lang][n] for n in checkpoints}
    main_models = [m for m in checkpoints if not m.startswith("ET-only j=")]
    results = pd.DataFrame(rows)
    if not args.no_shipped:
        evaluation = evaluate_models([checkpoints[m] for m in main_models], tasks=("shipped",),
                                     langs=[args.lang, "en"], limit=eval_limit)
        frame = evaluation.frame.copy()
        frame["model"] = frame["model"].map({checkpoints[m]: m for m in main_models}).fillna(frame["model"])
        results = pd.concat([results, frame[["model", "task", "language", "metric", "value", "stderr"]]])
    results.to_csv(out / "results.csv", index=False)
    table = results.pivot_table(index=["task", "language", "metric"], columns="model", values="value",
                                sort=False)[[m for m in checkpoints if m in set(results["model"])]]
    pd.set_option("display.width", 250)
    print(table.round(3).to_string())
    for lang, values in per_example.items():
        diffs = paired(values, "TFT")
        diffs.to_csv(out / f"heldout_paired_{lang}.csv", index=False)
        print(f"\nheld-out NLL ({lang}), paired difference to TFT over the same examples:")
        print(diffs.round(4).to_string(index=False))

    if sweep_layers:
        write_sweep(per_example, sweep_layers, out)

    if layers is None:
        print(f"\nruntime {time.perf_counter() - started:.0f} s; outputs in {out} (no probe, no compare figure)")
        return
    compare = compare_models([checkpoints["base"], checkpoints["TFT"], checkpoints["DFT-logits"]],
                             probe_cfg, labels=["base", "TFT", "DFT-logits"], layers=layers)
    compare.save(out / "compare", overwrite=True)
    print(compare.at_layers().to_string(index=False))
    print(f"\nruntime {time.perf_counter() - started:.0f} s; outputs in {out}")


if __name__ == "__main__":
    main()
