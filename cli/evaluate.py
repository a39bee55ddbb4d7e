"""`dftlens eval`: a thin layer over the library."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer

from .common import app, console, err_console, user_errors

_TASKS_HELP = (
    "Suites (shipped, paper, paper-qa, paper-understanding, all), benchmarks (dftlens_mcqa, dftlens_qa, "
    "xquad, mlqa, mkqa, truthfulqa, xnli, xcopa, xstorycloze, mmlu) or any lm-eval task name. "
    "Repeat or separate with commas."
)


@app.command("eval")
@user_errors
def evaluate(
    model: List[str] = typer.Option(["gemma3-270m"], "--model", "-m",
                                    help="Alias, Hugging Face id, local checkpoint or .gguf; repeat (or use commas) "
                                         "to compare models side by side, the first one being the reference."),
    tasks: List[str] = typer.Option(["shipped"], "--tasks", "-t", help=_TASKS_HELP),
    langs: List[str] = typer.Option(["vi,ar,zh,en"], "--langs", "-l", help="Language codes; repeat or use commas."),
    limit: Optional[int] = typer.Option(None, help="At most N documents per task (quick runs)."),
    batch_size: int = typer.Option(16, help="Sequences per forward pass (and per generation batch)."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/eval-<model>-<time>)."),
    overwrite: bool = typer.Option(False, help="Replace results already in --out."),
    allow_download: bool = typer.Option(False, "--allow-download",
                                        help="Let lm-eval download benchmark data (default: offline, fail fast)."),
    mkqa_file: Optional[Path] = typer.Option(None, help="mkqa.jsonl(.gz) from github.com/apple/ml-mkqa."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: the cores not already busy)."),
    list_tasks: bool = typer.Option(False, "--list-tasks", help="Show which lm-eval task answers each "
                                                                "benchmark and language, and exit."),
) -> None:
    """Zero-shot multilingual benchmarks (lm-evaluation-harness) for one or more models, side by side."""
    from dftlens.data.languages import split_list
    from dftlens.evaluation.planning import plan
    from dftlens.evaluation.skips import summarize_skips

    models, task_names, lang_list = split_list(model), split_list(tasks), split_list(langs)
    if list_tasks:
        from rich.table import Table

        planned, skipped = plan(task_names, lang_list, mkqa_file=mkqa_file)
        table = Table("benchmark", "lang", "lm-eval task", "note")
        for item in planned:
            table.add_row(item.benchmark, item.language, item.task_name, item.note or "")
        console.print(table)
        for line in summarize_skips(skipped):
            console.print(f"- {line}", highlight=False)
        return

    from dftlens.evaluation.outputs import OUTPUTS, plain_table, write_outputs
    from dftlens.evaluation.runner import auto_threads, evaluate_models
    from dftlens.io import prepare_output_dir

    out = out or Path("runs") / f"eval-{Path(models[0]).name if models else 'model'}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, list(OUTPUTS), overwrite)  # fail before an expensive run, not after
    run = evaluate_models(
        models, task_names, lang_list, limit=limit, batch_size=batch_size, allow_download=allow_download,
        mkqa_file=mkqa_file, threads=threads or auto_threads(),
        log=lambda message: err_console.print(f"[dim]{message}[/]", highlight=False),
    )
    paths = write_outputs(run, out, overwrite=True)
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
                  f"Wrote {paths['results.csv']}, {paths['report.html'].name}, {paths['eval.json'].name}.",
                  highlight=False, soft_wrap=True)
