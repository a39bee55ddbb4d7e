"""`dftlens lens`: a one-prompt logit-lens table (the quickest look at the English pivot)."""

from __future__ import annotations

from typing import Optional

import typer

from .common import app, console, user_errors
from .options import DEVICE, DEVICE_MAP, DTYPE, load_options


@app.command()
@user_errors
def lens(
    model: str = typer.Option("gemma3-270m", help="Alias, Hugging Face id, local directory or .gguf file."),
    word: str = typer.Option("eau", help="French word to translate into Chinese."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    top_k: int = typer.Option(3, help="Top tokens shown per layer."),
    device: Optional[str] = DEVICE,
    dtype: str = DTYPE,
    device_map: Optional[str] = DEVICE_MAP,
) -> None:
    """Print a per-layer logit-lens table for a built-in fr->zh translation prompt."""
    from dftlens import load_model
    from dftlens.analysis.quick_lens import lens_table, translation_prompt

    lm = load_model(model, backend=backend, **load_options(device, dtype, device_map))
    console.print(lens_table(lm, translation_prompt(word), top_k=top_k).to_string(index=False))
