"""The notebooks: committed clean, and they run top to bottom on the embedded model.

The kernel is this test process's own interpreter (the venv's ipykernel): the kernel
manager gets a kernel spec built from ``sys.executable`` instead of looking "python3" up
on the Jupyter path, where a user-wide kernelspec could point at another Python.
Nothing is installed or registered.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

from notebook_runner import _MARK, PLOTLY_MIME, execute, outputs  # noqa: F401

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LATENT = NOTEBOOKS / "latent_language.ipynb"
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"
    assert nb.metadata.kernelspec.name == "python3"


def test_latent_language_has_parameters_cell():
    nb = nbformat.read(LATENT, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "MAX_ITEMS" in tagged[0].source


@pytest.mark.embedded
def test_latent_language_notebook_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("DFTLENS_NB_QUICK", "1")  # the kernel inherits this environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = execute(LATENT, cwd=tmp_path)

    assert not outputs(nb, "error")
    # The kernel ran in this environment (the venv), not some other Python.
    marker = [o.text for o in outputs(nb, "stream") if _MARK in o.get("text", "")]
    assert marker and marker[0].split()[-1] == sys.prefix
    # The figures were shown: latent language, entropy, token shares (when measured), probes.
    figures = [o for o in outputs(nb, "display_data") if PLOTLY_MIME in o.get("data", {})]
    assert len(figures) >= 3
    titles = [f["data"][PLOTLY_MIME]["layout"]["title"]["text"] for f in figures]
    assert any(t.startswith("Latent language per layer") for t in titles)
    # Nothing was written next to the notebook or into the working directory.
    assert not any(tmp_path.iterdir()), sorted(os.listdir(tmp_path))
