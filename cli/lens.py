"""`dftlens lens`: a one-prompt logit-lens table (the quickest look at the English pivot)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dftlens.analysis.lens import LensTableConfig
from dftlens.models.load_settings import LENS_DTYPE_HELP, LoadSettings

from .common import app, console, user_errors
from .config_options import config_options
from .options import BACKEND, MODEL


@app.command()
@user_errors
@config_options(LensTableConfig, LoadSettings, helps={"dtype": LENS_DTYPE_HELP})
def lens(
    cfg: LensTableConfig,
    load: LoadSettings,
    model: str = MODEL,
    backend: str = BACKEND,
    csv: Optional[Path] = typer.Option(None, help="Also write the table to this CSV file (not overwritten without --overwrite)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --csv file."),
) -> None:
    """Print a per-layer logit-lens table for one prompt: P(answer) per language, entropy, top tokens.

    Example: dftlens lens --prompt 'Français: "eau" - 日本語: "' --answer 水 --answer-en water --csv eau.csv
    """
    from dftlens import load_model
    from dftlens.analysis.lens import lens_table
    from dftlens.io import write_owned_csv
    from dftlens.output_dirs import check_output_file

    if csv is not None:
        check_output_file(csv, overwrite)  # before the model loads
    from dftlens.models.name_resolution import check_top_k

    check_top_k(cfg.top_k, model)  # from config.json, before the weights load
    lm = load_model(model, backend=backend, **load.load_kwargs())
    table = lens_table(lm, cfg.text(), answers=cfg.answers(), top_k=cfg.top_k, overlap=cfg.overlap)
    shown = table.drop(columns="top_token")
    console.print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"), highlight=False, soft_wrap=True)
    if csv is not None:
        write_owned_csv(csv, table)
        console.print(f"Wrote {csv}")
