"""Model loading and the one model interface (see interface.LensModel)."""

from __future__ import annotations

from .engines import BACKENDS, make_engine
from .hook_points import SITES, hook_name, parse_hook_name
from .engine_protocol import Capture, last_token_index
from .interface import LensModel
from .interventions import Edit
from .load_settings import DTYPE_CHOICES
from .loading import load_hf, load_model
from .name_resolution import resolve
from .aliases import ALIASES, EMBEDDED
from .quiet import silence_cache_rename_warning

# Every verb and notebook loads models through this package: the deprecation line is dropped once here.
silence_cache_rename_warning()


__all__ = [
    "ALIASES", "BACKENDS", "DTYPE_CHOICES", "EMBEDDED", "SITES", "Capture", "Edit", "LensModel", "hook_name",
    "last_token_index", "load_hf", "load_model", "make_engine", "parse_hook_name", "resolve",
    "silence_cache_rename_warning",
]
