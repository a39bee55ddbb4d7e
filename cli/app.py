"""`dftlens` commands. Each one parses options, calls the library, prints the result.

User errors (:class:`dftlens.DftlensError`) become one sentence on stderr and exit
code 2; no traceback.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from dftlens.errors import DftlensError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()
err_console = Console(stderr=True)


def user_errors(func):
    """Turn DftlensError into a plain message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DftlensError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; no partial output was kept.")
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@user_errors
def models() -> None:
    """List model aliases and whether each is available offline."""
    from rich.table import Table

    from dftlens.models.loading import offline_status
    from dftlens.models.aliases import ALIASES

    table = Table("alias", "Hugging Face id", "offline", "note")
    for alias, spec in ALIASES.items():
        table.add_row(alias, spec.hf_id, offline_status(alias), spec.note)
    console.print(table)


# Each verb lives in its own module and registers itself on `app`.
from . import compare, evaluate, lens, probe, train  # noqa: E402,F401


def main() -> None:
    app(prog_name="dftlens")


if __name__ == "__main__":  # run as a script, the commands registered on the imported module's app
    from dftlens_cli.app import main as registered_main

    sys.exit(registered_main())
