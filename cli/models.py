"""`dftlens models`: the supported families, the model aliases and whether each is available offline."""

from __future__ import annotations

from .common import app, console, user_errors


@app.command()
@user_errors
def models() -> None:
    """List the supported model families, the model aliases and whether each is available offline."""
    from rich.table import Table

    from dftlens.models.aliases import ALIASES
    from dftlens.models.architecture import FAMILIES, family_sites
    from dftlens.models.name_resolution import offline_status

    # Hugging Face ids are never cut or wrapped: they are what `hf download` needs.
    families = Table(title="Supported families")
    families.add_column("family", no_wrap=True)  # the names the docs and errors use: never split
    families.add_column("HF model_type", no_wrap=True)
    families.add_column("hook sites", overflow="fold")
    families.add_column("example", no_wrap=True)
    for fam in FAMILIES:
        families.add_row(fam.name, ", ".join(fam.model_types), family_sites(fam), fam.example)
    console.print(families)

    table = Table("alias", title="Aliases")
    table.add_column("Hugging Face id", no_wrap=True)
    table.add_column("offline")
    table.add_column("note", overflow="fold")
    for alias, spec in ALIASES.items():
        table.add_row(alias, spec.hf_id, offline_status(alias), spec.note)
    console.print(table)
