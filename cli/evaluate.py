"""`dftlens evaluate`: a thin layer over the library."""

from __future__ import annotations

import typer

from .app import app, console, user_errors
