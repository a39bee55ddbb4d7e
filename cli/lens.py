"""`dftlens lens`: a one-prompt logit-lens table (the quickest look at the English pivot)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import app, console, user_errors
from .options import DEVICE, DEVICE_MAP, DTYPE, load_options


@app.command()
@user_errors
def lens(
    model: str = typer.Option("gemma3-270m", help="Alias, Hugging Face id, local directory or .gguf file."),
    prompt: Optional[str] = typer.Option(
        None, help="Your own prompt; the lens reads the position after its last token (end it where the answer starts)."),
    answer: Optional[str] = typer.Option(None, help="The expected answer word in the target language (column p_target)."),
    answer_en: Optional[str] = typer.Option(None, help="Its English version (column p_en)."),
    word: str = typer.Option("eau", help="Without --prompt: the French word of the built-in fr->zh prompt."),
    csv: Optional[Path] = typer.Option(None, help="Also write the table to this CSV file (not overwritten without --overwrite)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --csv file."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    top_k: int = typer.Option(3, help="Top tokens shown per layer."),
    device: Optional[str] = DEVICE,
    dtype: str = DTYPE,
    device_map: Optional[str] = DEVICE_MAP,
) -> None:
    """Print a per-layer logit-lens table for one prompt: P(answer) per language, entropy, top tokens.

    Example: dftlens lens --prompt 'Français: "eau" - 日本語: "' --answer 水 --answer-en water --csv eau.csv
    """
    from dftlens import load_model
    from dftlens.analysis.lens import lens_table, translation_prompt
    from dftlens.errors import DataError, OutputExists
    from dftlens.io import write_csv

    if csv is not None and csv.exists() and not overwrite:
        raise OutputExists(f"{csv} already exists; pass --overwrite to replace it or choose another --csv.")
    if prompt is not None and not prompt.strip():
        raise DataError("--prompt is empty; give the text the model should continue.")
    answers = {}
    if answer_en:
        answers["en"] = answer_en
    if answer:
        answers["target"] = answer
    lm = load_model(model, backend=backend, **load_options(device, dtype, device_map))
    table = lens_table(lm, prompt if prompt is not None else translation_prompt(word), answers=answers, top_k=top_k)
    shown = table.drop(columns="top_token")
    console.print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"), highlight=False, soft_wrap=True)
    if csv is not None:
        write_csv(csv, table)
        console.print(f"Wrote {csv}")
