"""dftlens: find where an LLM converts languages and thinks in English, then train it there."""

from .errors import DftlensError
from .models import LensModel, hook_name, load_model, parse_hook_name
from .analysis.lens import lens_table  # noqa: E402  (one prompt, one call: the per-layer lens table)

__version__ = "0.1.0"
__all__ = ["DftlensError", "LensModel", "hook_name", "lens_table", "load_model", "parse_hook_name", "__version__"]
