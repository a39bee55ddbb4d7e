"""Where dftlens keeps its cache (converted models) and, by default, its runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DFTLENS_CACHE``, else ``$XDG_CACHE_HOME/dftlens``, else ``~/.cache/dftlens``."""
    if os.environ.get("DFTLENS_CACHE"):
        return Path(os.environ["DFTLENS_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dftlens"
