"""dftlens: find where an LLM converts languages and thinks in English, then train it there."""

from .errors import DftlensError
from .models import LensModel, hook_name, load_model, parse_hook_name

__version__ = "0.1.0"
__all__ = ["DftlensError", "LensModel", "hook_name", "load_model", "parse_hook_name", "__version__"]
