"""`dftlens models`: the model aliases and whether each is available offline."""

from __future__ import annotations

from .common import app, console, user_errors


@app.command()
@user_errors
def models() -> None:
    """List model aliases and whether each is available offline."""
    from rich.table import Table

    from dftlens.models.aliases import ALIASES
    from dftlens.models.loading import offline_status

    table = Table("alias", "Hugging Face id", "offline", "note")
    for alias, spec in ALIASES.items():
        table.add_row(alias, spec.hf_id, offline_status(alias), spec.note)
    console.print(table)
