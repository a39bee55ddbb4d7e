"""`dftlens compare` overlays two checkpoints' curves."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from dftlens.analysis.layer_choice import LayerChoice
from dftlens_cli.app import app

runner = CliRunner()


def test_compare_two_checkpoints(tiny_dirs, tmp_path):
    layers = tmp_path / "layers.json"
    LayerChoice("tiny", 4, 1, 2, ["en", "fr", "zh"], {}).save(layers)
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--model", str(tiny_dirs["gemma3"]), "--model", str(tiny_dirs["llama"]),
                                 "--label", "before", "--label", "after", "--layers", str(layers),
                                 "--pairs", "fr:zh", "--max-items", "4", "--max-sentences", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lens = pd.read_csv(out / "compare_lens.csv")
    assert set(lens["model"]) == {"before", "after"}
    html = (out / "compare.html").read_text()
    assert "before" in html and "after" in html and html.count("plotly.js v") <= 2
    assert "LC (1)" in result.output and "ET (2)" in result.output


def test_compare_needs_two_models(tiny_dirs, tmp_path):
    result = runner.invoke(app, ["compare", "--model", str(tiny_dirs["llama"]), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "at least two" in result.output
