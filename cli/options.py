"""Shared command-line options of the verbs whose options are not (yet) generated from a config.

Model-loading options (``--device``, ``--dtype``, ...) are generated from
:class:`dftlens.models.load_settings.LoadSettings` fields by :mod:`.config_options`.
"""

from __future__ import annotations

import typer

LENS_CHUNK = typer.Option(
    None, "--lens-chunk", min=1,
    help="Residual rows (layer x prompt) the logit lens decodes at once (default: sized from free memory).",
)


REMOTE = typer.Option(
    False, "--remote",
    help="Run on NDIF (with --backend nnsight): the model is built from its Hugging Face id with meta weights "
         "and the logit lens is measured inside the trace. Needs network and NDIF_API_KEY.",
)


FIGURE_FORMAT = typer.Option(
    None, "--figure-format",
    help="Also save every report figure as --out/figures/<name>.<fmt>: png, svg, pdf (comma-separated).",
)  # checked by dftlens.viz.export.parse_formats, before any model loads

MODEL = typer.Option("gemma3-270m", "--model", help="Alias, Hugging Face id, local directory or .gguf file.")
BACKEND = typer.Option("transformer_lens", "--backend", help="transformer_lens or nnsight.")
