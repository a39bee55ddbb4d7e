"""The `dftlens` entry point: imports every command module (each registers its verb on
:data:`.common.app`) and adds ``--version``. Command modules never import this module."""

from __future__ import annotations

from typing import Optional

import typer

# Each module registers its verb on `app`; imported in pipeline order, which is the order `--help` lists.
from . import models, lens, probe, patch, neurons, train, evaluate, compare  # noqa: F401,I001
from .common import app, console


def _version(value: bool) -> None:
    if value:
        from dftlens import __version__

        console.print(f"dftlens {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the dftlens version and exit."),
) -> None:
    """Find where an LLM converts languages and thinks in English, then fine-tune it there."""


def main() -> None:
    """The ``dftlens`` console script: run the typer app (exit code 2 for user errors)."""
    app(prog_name="dftlens")


__all__ = ["app", "main"]
