"""`dftlens eval`: a thin layer over the library."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dftlens.config_files import RUN_CONFIG
from dftlens.evaluation.config import EvalConfig

from .common import app, console, err_console, user_errors
from .config_options import RunSettings, config_options
from .options import FIGURE_FORMAT

@app.command("eval")
@user_errors
@config_options(EvalConfig)
def evaluate(
    cfg: EvalConfig,
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/eval-<model>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    list_tasks: bool = typer.Option(False, "--list-tasks", help="Show which lm-eval task answers each "
                                                                "benchmark and language, and exit."),
    figure_format: Optional[str] = FIGURE_FORMAT,
    settings: RunSettings = None,
) -> None:
    """Zero-shot multilingual benchmarks (lm-evaluation-harness) for one or more models, side by side."""
    from dftlens.evaluation.planning import plan
    from dftlens.evaluation.skips import summarize_skips
    from dftlens.viz.export import parse_formats

    formats = parse_formats(figure_format)  # a bad format fails now, before any model loads
    if list_tasks:
        from rich.table import Table

        planned, skipped = plan(cfg.tasks, cfg.langs, mkqa_file=cfg.mkqa_file)
        table = Table("benchmark", "lang", "lm-eval task", "note")
        for item in planned:
            table.add_row(item.benchmark, item.language, item.task_name, item.note or "")
        console.print(table)
        for line in summarize_skips(skipped):
            console.print(f"- {line}", highlight=False)
        return

    from dftlens.evaluation.outputs import OUTPUTS, plain_table, write_outputs
    from dftlens.evaluation.runner import evaluate_models
    from dftlens.output_dirs import prepare_output_dir

    first = Path(cfg.models[0]).name if cfg.models else "model"
    out = out or Path("runs") / f"eval-{first}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)  # fail before an expensive run, not after
    run = evaluate_models(cfg, log=lambda message: err_console.print(f"[dim]{message}[/]", highlight=False))
    settings.values["out"] = str(out)
    # run_config.yaml (and figures/ with --figure-format) swap in with the rest
    paths = write_outputs(run, out, overwrite=overwrite, extra=settings.save, figure_formats=formats)
    if run.frame.empty:
        console.print("No results: none of the requested tasks could run here (see below).")
    else:
        console.print(plain_table(run), highlight=False, soft_wrap=True)
    for line in summarize_skips(run.skipped):
        console.print(f"- not run: {line}", highlight=False, soft_wrap=True)
    for line in run.notes:
        console.print(f"- note: {line}", highlight=False, soft_wrap=True)
    timing = ", ".join(f"{m} {s:.0f} s" for m, s in run.model_seconds.items())
    console.print(f"Runtime {run.seconds:.0f} s ({timing or 'no model run'}). "
                  f"Wrote {paths['results.csv']}, {paths['report.html'].name}, {paths['eval.json'].name}, {RUN_CONFIG}"
                  + (f", figures/*.{{{','.join(formats)}}}" if formats else "") + ".",
                  highlight=False, soft_wrap=True)
