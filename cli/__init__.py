"""The `dftlens` command line: a thin typer layer over the dftlens Python API."""
