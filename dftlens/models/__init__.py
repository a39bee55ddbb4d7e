"""Model loading and the one model interface (see interface.LensModel)."""

from __future__ import annotations

from pathlib import Path

import torch

from .engines import BACKENDS, make_engine
from .hooks import SITES, hook_name, parse_hook_name
from .interface import Capture, LensModel, last_token_index
from .interventions import Edit
from .loading import load_hf, resolve
from .aliases import ALIASES, EMBEDDED


def load_model(
    name: str = EMBEDDED,
    backend: str = "transformer_lens",
    device: str | None = None,
    dtype: torch.dtype | None = None,
    remote: bool = False,
) -> LensModel:
    """Load ``name`` (alias, Hugging Face id, local directory or .gguf file) once.

    ``backend`` picks the engine that reads activations ("transformer_lens" or
    "nnsight"); ``remote=True`` (nnsight only) runs traces on NDIF.
    """
    if backend not in BACKENDS:
        from ..errors import DftlensError

        raise DftlensError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    resolved = resolve(name)
    hf_model, tokenizer = load_hf(resolved.path, device, dtype)
    options = {"remote": True} if remote else {}
    engine = make_engine(backend, hf_model, tokenizer, name, str(resolved.path), **options)
    return LensModel(hf_model, tokenizer, engine, name=name, path=str(Path(resolved.path)))


__all__ = [
    "ALIASES", "BACKENDS", "EMBEDDED", "SITES", "Capture", "Edit", "LensModel", "hook_name",
    "last_token_index", "load_model", "parse_hook_name", "resolve",
]
