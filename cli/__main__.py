"""`python -m dftlens_cli` runs the same CLI as the `dftlens` console script."""

from .app import main

main()
