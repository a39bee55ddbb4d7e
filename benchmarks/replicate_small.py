"""A small-scale replication of the DFT comparison on the embedded model (CPU), over seeds.

Per seed (``--seeds 0,1,2``; each seed sets the data order, the LoRA initialisation and
the probe's demonstrations, hence that seed's LC/ET layers), train TFT, DFT-logits,
DFT-feature (one run per ``--feature-norms`` variant), the LC-only (feature) and
ET-only (logits) ablations and any ``--sweep-et`` layers, with the ``--recipe``
(``lora``: LoRA r 16, lr 2e-4, batch 4, ``--steps``; ``paper``: full fine-tuning,
lr 2e-5, batch 128 by accumulation, 3 epochs). Every run is scored right after it
trains (held-out NLL per example, zh and English side; the shipped tasks) into its
``scores.json``: rerunning the command resumes, and ``--shard k/n`` splits the jobs
over processes (see ``replicate_runs.py``). The tables: per variant the paired
difference to TFT, per-example differences averaged over seeds, with the SE over
examples, the SE over seeds and their combination (``dftlens.analysis.stats.paired_over_seeds``).

Usage: python benchmarks/replicate_small.py [--seeds 0,1,2] [--recipe lora|paper] [--steps 60] [--feature-norms
none,standardize] [--contrastive lc,et] [--neurons FILE] [--sweep-et 6,9,12,15] [--runs A,B] [--shard k/n] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from replicate_runs import parse_seeds, signal_fields

from dftlens.data.languages import split_list

from dftlens.io import read_csv, write_csv  # formula cells neutralised, and undone on reading


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


def write_sweep(tables: dict[str, pd.DataFrame], layers: list[int], out: Path) -> None:
    """The ET-layer sweep from the paired tables per side (model, nll, diff_vs_TFT, se): sweep.csv, sweep.html."""
    rows = []
    for side, table in tables.items():
        diffs = table.set_index("model")
        for j in layers:
            name = f"ET-only j={j}"
            if name in diffs.index:
                rows.append({"et_layer": j, "language": side, "nll": diffs.loc[name, "nll"],
                             "diff_vs_TFT": diffs.loc[name, "diff_vs_TFT"], "se": diffs.loc[name, "se"],
                             "beyond_2se": diffs.loc[name, "beyond_2se"]})
    if not rows:
        return
    sweep = pd.DataFrame(rows)
    write_csv(out / "sweep.csv", sweep)
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
                merged.update(read_csv(path).to_dict(orient="list"))
        if "ET-only (logits)" in merged:
            merged.setdefault("ET-only j=12", merged["ET-only (logits)"])
        per_example[side] = merged
    pd.set_option("display.width", 250)
    for side, values in per_example.items():
        frame = pd.DataFrame({"model": list(values), "nll_mean_of_examples": [np.mean(v) for v in values.values()],
                              "nll_se": [np.std(v, ddof=1) / np.sqrt(len(v)) for v in values.values()]})
        diffs = paired(values, "TFT")  # its "se": the paired SE, as in a single run's heldout_paired_<lang>.csv
        table = frame.merge(diffs, on="model")
        write_csv(out / f"heldout_paired_{side}.csv", table)
        print(f"\nheld-out NLL ({side}): mean of per-example NLL +- SE, paired difference to TFT +- paired SE")
        print(table.round(4).to_string(index=False))
    layers = sorted(int(n.split("=")[1]) for n in per_example[lang] if n.startswith("ET-only j="))
    if layers:
        tables = {side: read_csv(out / f"heldout_paired_{side}.csv").rename(columns={"nll_mean_of_examples": "nll"})
                  for side in per_example}
        write_sweep(tables, layers, out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/replicate")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps of the lora recipe")
    parser.add_argument("--seeds", default="0", help="comma list: every variant is trained once per seed")
    parser.add_argument("--recipe", default="lora", choices=("lora", "paper"),
                        help="lora: LoRA r 16, lr 2e-4, batch 4, --steps; paper: full fine-tuning, lr 2e-5, "
                             "batch 128 by accumulation, 3 epochs (Huo et al.)")
    parser.add_argument("--batch-size", type=int, default=4, help="micro-batch (the paper recipe accumulates to 128)")
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--eval-limit", type=int, default=40, help="documents per shipped task (0 = all)")
    parser.add_argument("--feature-norms", default="none", help="comma list: one DFT-feature run per --feature-norm")
    parser.add_argument("--feature-weight", type=float, default=1.0,
                        help="w_lc and w_et of the feature runs (DFT-feature, LC-only); 1 = the paper's")
    parser.add_argument("--contrastive", default="", help="comma list of lc, et: one contrastive run per place "
                        "(InfoNCE, the other signal off)")
    parser.add_argument("--temperature", type=float, default=0.1, help="of the contrastive runs")
    parser.add_argument("--contrastive-norm", default="standardize", choices=["none", "center", "standardize"],
                        help="--feature-norm of the contrastive runs (with none the pooled states are nearly "
                        "parallel and InfoNCE sits at chance, see docs/results.md)")
    parser.add_argument("--neurons", default=None, help="a neurons.csv: adds TFT-neurons (TFT training only the "
                        "--lang neurons' MLP rows/columns; full fine-tuning at the recipe's lr)")
    parser.add_argument("--sweep-et", default="", help="comma list of ET layers: one ET-only (logits) run each")
    parser.add_argument("--lc-layer", type=int, default=None, help="with --et-layer: skip the probe (and the compare figure)")
    parser.add_argument("--et-layer", type=int, default=None)
    parser.add_argument("--no-lc-only", action="store_true", help="skip the LC-only (feature) ablation")
    parser.add_argument("--no-shipped", action="store_true", help="held-out NLL only (no shipped tasks)")
    parser.add_argument("--runs", default="", help="comma list: train and score only these runs (by name)")
    parser.add_argument("--no-base", action="store_true", help="do not score the base model")
    parser.add_argument("--shard", default="", help="k/n: this process runs jobs k, k+n, ... (run --probe-only "
                        "first, or give --lc-layer/--et-layer); any process's last step writes the tables")
    parser.add_argument("--probe-only", action="store_true", help="run the probe of every seed, then stop")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--data", default=None, help="training instructions (default: the bundled set)")
    parser.add_argument("--limit", type=int, default=None, help="training examples used")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--combine", default="", help="comma list of output dirs of earlier single-seed runs: "
                        "merge their held-out scores into --out's paired tables and sweep; trains nothing")
    parser.add_argument("--quick", action="store_true", help="a few steps and items: checks the pipeline only")
    return parser.parse_args(argv)


def probe_layers(args: argparse.Namespace, seed: int, out: Path) -> tuple[int, int]:
    """The seed's (LC, ET) layers: given, or its probe's (run once, seeded, then read back from layers.json).

    The first seed's probe is written to ``out/probe`` (what the notebook reads), the others' to ``out/seed<s>/probe``.
    """
    if args.lc_layer is not None and args.et_layer is not None:
        return args.lc_layer, args.et_layer
    from dftlens.layers import LayerChoice

    directory = out / "probe" if seed == parse_seeds(args.seeds)[0] else out / f"seed{seed}" / "probe"
    if not (directory / "layers.json").exists():
        if args.shard:
            raise SystemExit(f"error: {directory}/layers.json is missing; run --probe-only first (or give layers).")
        from dftlens import load_model
        from dftlens.analysis.probe_run import run_probe

        run_probe(load_model(args.model), probe_config(args, seed)).save(directory, overwrite=True)
    choice = LayerChoice.load(directory / "layers.json")
    return choice.lc_layer, choice.et_layer


def probe_config(args: argparse.Namespace, seed: int):
    """The probe's settings (fr->zh and de->ja translation; seeded demonstrations and splits)."""
    from dftlens.analysis.probe_run import ProbeConfig

    return ProbeConfig(pairs=[("fr", "zh"), ("de", "ja")], tasks=["translation"], seed=seed,
                       max_items=8 if args.quick else 24, max_sentences=12 if args.quick else 40)


def make_scorer(args: argparse.Namespace, eval_limit: int | None):
    """``score(path)``: held-out NLL per example (target and English side) and, unless --no-shipped, the shipped tasks."""
    from dftlens import load_model
    from dftlens.evaluation.heldout import heldout_nll
    from dftlens.evaluation.config import EvalConfig
    from dftlens.evaluation.runner import evaluate_models

    def score(path: str) -> dict:
        lm = load_model(path)
        heldout = {side: heldout_nll(lm, None, args.lang, english=side == "en")["per_example"]
                   for side in (args.lang, "en")}
        shipped = []
        if not args.no_shipped:
            cfg = EvalConfig(models=[path], tasks=["shipped"], langs=[args.lang, "en"], limit=eval_limit)
            frame = evaluate_models(cfg, lm).frame
            shipped = frame[["task", "language", "metric", "value", "stderr"]].to_dict(orient="records")
        return {"heldout": heldout, "shipped": shipped}

    return score


def plan_runs(args: argparse.Namespace, norms: list[str], sweep_layers: list[int]) -> tuple[dict, dict]:
    """``({name: TrainConfig fields}, {sweep name: ET layer})`` in the order runs are trained."""
    table = variants(norms, lc_only=not args.no_lc_only, feature_weight=args.feature_weight)
    # Most informative first: TFT, the normalised feature variants, ET-only at the probe's layer, the sweep, the rest.
    order = ["TFT"] + [n for n in table if n.startswith("DFT-feature") and "none" not in n] + ["ET-only (logits)"]
    names = [n for n in order if n in table] + [f"ET-only j={j}" for j in sweep_layers]
    names += [n for n in table if n not in names]
    sweep = {f"ET-only j={j}": j for j in sweep_layers}
    runs = {n: signal_fields("off", "logits", "none", 1.0) if n in sweep else
            signal_fields(*table[n], args.feature_weight) for n in names}
    extra = {f"Contrastive-{where.upper()}": {**signal_fields(*(("contrastive", "off") if where == "lc" else
                                                                ("off", "contrastive")), args.contrastive_norm, 1.0),
                                               "temperature": args.temperature}
             for where in split_list(args.contrastive)}
    if args.neurons:
        extra["TFT-neurons"] = {**signal_fields("off", "off", "none", 1.0), "train_neurons": args.neurons,
                                "lora": False}
    runs = {"TFT": runs.pop("TFT"), **extra, **runs}  # right after TFT: trained first at every seed
    chosen = [n.strip() for n in args.runs.split(",") if n.strip()]
    return ({n: f for n, f in runs.items() if not chosen or n in chosen}, sweep)


def report(args: argparse.Namespace, out: Path, jobs: list, sweep: dict[str, int], layers: dict[int, tuple]) -> dict:
    """Every table from the finished jobs under ``out`` (whoever ran them): paired NLL, shipped tasks, logs.

    ``heldout_paired_<side>.csv``: per variant the NLL (mean over seeds and examples), the paired
    difference to TFT and its SEs (``se_examples``, ``se_seeds``, ``se``; see
    :func:`dftlens.analysis.stats.paired_over_seeds`); ``shipped_paired.csv``; ``results.csv``
    (mean over seeds); ``train_logs.csv`` (every run's step log, with its seed). Returns the scores found.
    """
    from replicate_runs import collect, paired_table, shipped_table

    found = collect(out, jobs)
    for seed, (lc, et) in layers.items():  # an ET sweep run at the seed's own ET layer is ET-only (logits)
        for name, j in sweep.items():
            if j == et and seed in found.get("ET-only (logits)", {}):
                found.setdefault(name, {}).setdefault(seed, found["ET-only (logits)"][seed])
    base = out / "base" / "scores.json"
    pd.set_option("display.width", 250)
    tables = {side: paired_table(found, side) for side in (args.lang, "en")} if "TFT" in found else {}
    rows = []
    for side, table in tables.items():
        write_csv(out / f"heldout_paired_{side}.csv", table)
        print(f"\nheld-out NLL ({side}), mean over seeds and examples; paired difference to TFT, SE over "
              "examples (seed-averaged), over seeds, and combined:")
        print(table.round(4).to_string(index=False))
        rows += [{"model": r.model, "task": "heldout_instructions", "language": side, "metric": "nll",
                  "value": r.nll, "stderr": np.nan} for r in table.itertuples()]
    shipped = shipped_table(found)
    if len(shipped):
        write_csv(out / "shipped_paired.csv", shipped)
        print("\nshipped tasks, mean over seeds; difference to TFT (same seed) and its SE across seeds:")
        print(shipped.round(4).to_string(index=False))
        rows += shipped[["model", "task", "language", "metric", "value", "stderr"]].to_dict(orient="records")
    if base.exists():
        scores = json.loads(base.read_text(encoding="utf-8"))
        rows = [{"model": "base", "task": "heldout_instructions", "language": side, "metric": "nll",
                 "value": float(np.mean(v)), "stderr": float(np.std(v, ddof=1) / np.sqrt(len(v)))}
                for side, v in scores["heldout"].items()] + \
               [{"model": "base", **r} for r in scores["shipped"]] + rows
    if rows:
        write_csv(out / "results.csv", pd.DataFrame(rows))
    logs = [pd.read_json(job.run_dir(out) / "log.jsonl", lines=True).assign(model=job.name, seed=job.seed)
            for job in jobs if (job.run_dir(out) / "log.jsonl").exists()]
    if logs:
        write_csv(out / "train_logs.csv", pd.concat(logs))
    if sweep and tables:
        write_sweep(tables, sorted(sweep.values()), out)
    return found


def main(argv: list[str] | None = None) -> None:
    """Plan the seeds x variants jobs, run this process's share (resuming), then write the tables."""
    args = parse_args(argv)
    started, out = time.perf_counter(), Path(args.out)
    if args.combine:
        combine([Path(d) for d in args.combine.split(",")], out, args.lang)
        return
    from replicate_runs import Job, make_recipe, plan, run_job, shard

    from dftlens.data.instruction_files import load_instructions

    seeds = parse_seeds(args.seeds)
    n_train = len(load_instructions(args.data, args.lang, limit=8 if args.quick else args.limit))
    try:
        recipe = make_recipe(args.recipe, 3 if args.quick else args.steps, n_train, args.batch_size)
    except ValueError as err:
        raise SystemExit(f"error: {err}.") from None
    norms = [n.strip() for n in args.feature_norms.split(",") if n.strip()]
    runs, sweep = plan_runs(args, norms, [int(j) for j in args.sweep_et.split(",") if j.strip()])
    jobs = plan(runs, seeds, sweep)
    mine = shard(jobs, args.shard) if args.shard else jobs
    out.mkdir(parents=True, exist_ok=True)
    layers = {seed: probe_layers(args, seed, out) for seed in seeds}
    print(f"recipe {recipe}; {n_train} training examples; seeds {seeds}; layers (LC, ET) per seed {layers}; "
          f"{len(mine)} of {len(jobs)} jobs here ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.probe_only:
        return
    eval_limit = 8 if args.quick else (args.eval_limit or None)
    score = make_scorer(args, eval_limit)
    base = out / "base" / "scores.json"
    if not args.no_base and not base.exists() and (not args.shard or args.shard.startswith("0/")):
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_text(json.dumps(score(args.model)), encoding="utf-8")
    shared = {**recipe.train_fields(), "model": args.model, "data": args.data, "lang": args.lang,
              "max_length": args.max_length, "limit": 8 if args.quick else args.limit}
    for job in mine:
        if job.et_layer is not None and job.et_layer == layers[job.seed][1] and "ET-only (logits)" in runs:
            continue  # the same run as ET-only (logits) of this seed
        run_job(job, out, shared, layers[job.seed], score)
        print(f"scored {job.name} seed {job.seed} ({time.perf_counter() - started:.0f} s)", flush=True)
    found = report(args, out, jobs, sweep, layers)
    complete = all(s in found.get(n, {}) for n in ("TFT", "DFT-logits") for s in seeds[:1])
    if args.lc_layer is None and complete and not args.shard and not args.runs:
        compare_figure(args, out, Job("TFT", seeds[0]), Job("DFT-logits", seeds[0]))
    print(f"\nruntime {time.perf_counter() - started:.0f} s; outputs in {out}")


def compare_figure(args: argparse.Namespace, out: Path, tft, dft) -> None:
    """Latent-language curves of base vs TFT vs DFT-logits (first seed) at the first seed's probe layers."""
    from dftlens.analysis.compare import compare_models

    paths = [args.model, str(tft.run_dir(out) / "final"), str(dft.run_dir(out) / "final")]
    compare = compare_models(paths, probe_config(args, tft.seed), labels=["base", "TFT", "DFT-logits"],
                             layers=out / "probe" / "layers.json")
    compare.save(out / "compare", overwrite=True)
    print(compare.at_layers().to_string(index=False))


if __name__ == "__main__":
    main()
