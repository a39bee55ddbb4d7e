"""Model-loading options for the verbs whose options are not (yet) generated from a config.

The help, defaults and choices come from :class:`dftlens.models.loading.LoadSettings`
(written once there; configs such as ``EvalConfig`` inherit the same fields). Use
them as defaults (``dtype: str = DTYPE``) and hand the values to :func:`load_options`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from dftlens.models.loading import LoadSettings

_FIELDS = {f.name: f for f in dataclasses.fields(LoadSettings)}


def _option(name: str, default=None, help: str | None = None):
    field = _FIELDS[name]
    text = help or field.metadata["help"]
    if field.metadata.get("choices"):
        text = f"{text} One of: {', '.join(field.metadata['choices'])}."
    return typer.Option(field.default if default is None else default, "--" + name.replace("_", "-"), help=text)


DEVICE = _option("device")
DTYPE = _option("dtype")
DEVICE_MAP = _option("device_map")
TRAIN_DTYPE = _option("dtype", "float32", "Weights dtype for training: float32 (master weights; bf16 autocast on "
                                          "a GPU), auto, bfloat16 or float16.")
LENS_CHUNK = typer.Option(
    None, "--lens-chunk", min=1,
    help="Residual rows (layer x prompt) the logit lens decodes at once (default: sized from free memory).",
)


REMOTE = typer.Option(
    False, "--remote",
    help="Run on NDIF (with --backend nnsight): the model is built from its Hugging Face id with meta weights "
         "and the logit lens is measured inside the trace. Needs network and NDIF_API_KEY.",
)


def load_options(device: Optional[str] = None, dtype: str = "auto", device_map: Optional[str] = None,
                 lens_chunk: Optional[int] = None) -> dict:
    """The keyword arguments of ``load_model`` for these option values (a bad --dtype fails here)."""
    options = LoadSettings(device=device, dtype=dtype, device_map=device_map).load_kwargs()
    if lens_chunk is not None:
        options["lens_chunk"] = lens_chunk
    return options


FIGURE_FORMAT = typer.Option(
    None, "--figure-format",
    help="Also save every report figure as --out/figures/<name>.<fmt>: png, svg, pdf (comma-separated).",
)  # checked by dftlens.viz.export.parse_formats, before any model loads

MODEL = typer.Option("gemma3-270m", "--model", help="Alias, Hugging Face id, local directory or .gguf file.")
BACKEND = typer.Option("transformer_lens", "--backend", help="transformer_lens or nnsight.")
