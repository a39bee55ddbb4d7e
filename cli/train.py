"""`dftlens train`: a thin layer over the library; its options are TrainConfig's fields."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

from dftlens.dft.config import TrainConfig

from .common import app, console, err_console, user_errors
from .config_options import RunSettings, config_options


@app.command()
@user_errors
@config_options(TrainConfig, lazy=True, exclude=("device_map",))  # one device per process; --fsdp shards
def train(
    build: Callable[..., TrainConfig],
    chat_template: bool = typer.Option(False, "--chat-template", help="Format prompts with the tokenizer's chat template."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run in --out (with --resume: "
                                   "continue a finished run from an earlier checkpoint, rewriting final/)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory (or from this checkpoint)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    dump_examples: Optional[int] = typer.Option(
        None, help="Write the token sequences of the first N examples to OUT/examples.jsonl and exit (no training)."),
    settings: RunSettings = None,
) -> None:
    """Deep Supervision Fine-Tuning: target-language fine-tuning plus LC/ET supervision at the probed layers."""
    from dftlens.dft.run_dir import curve_table, resume_config
    from dftlens.dft.trainer import TrainingInterrupted
    from dftlens.dft.trainer import train as run_training
    from dftlens.errors import DftlensError
    from dftlens.signals import exit_code

    template = {"template": "chat"} if chat_template else {}
    if dump_examples is not None:
        from dftlens.dft.examples import dump_examples as dump

        if dump_examples < 1:
            raise DftlensError("--dump-examples must be at least 1.")
        # Only the data settings matter here: every sequence is written, whatever the signals.
        cfg = build(**template, lc_signal="off", et_signal="off")
        path = dump(cfg, dump_examples, overwrite=overwrite)
        console.print(f"wrote {path}", highlight=False)
        return
    if resume is not None:
        given = sorted(settings.given - {"overwrite", "resume", "progress", "dump_examples"})
        if given:
            raise DftlensError(
                "--resume continues a run with its saved settings; drop "
                + ", ".join("--" + n.replace("_", "-") for n in given) + "."
            )
        cfg = resume_config(resume)
    else:
        cfg = build(**template)
    try:
        result = run_training(cfg, resume=resume, overwrite=overwrite, progress=progress,
                              on_warning=lambda text: err_console.print(f"warning: {text}", highlight=False))
    except TrainingInterrupted as stop:
        err_console.print(
            f"interrupted after step {stop.step}; checkpoint saved in {stop.checkpoint}. "
            f"Continue with: dftlens train --resume {cfg.out}", highlight=False)
        raise typer.Exit(exit_code(stop)) from None
    except KeyboardInterrupt as stop:  # a second Ctrl-C, or one before training started
        err_console.print(f"stopped; checkpoints already in {cfg.out} (if any) are intact.", highlight=False)
        raise typer.Exit(exit_code(stop)) from None
    if not result.main:
        return
    console.print(curve_table(result.log).to_string(index=False), highlight=False)
    console.print(f"model saved in {result.final} (log: {result.out / 'log.jsonl'})", highlight=False)
