"""`dftlens compare` overlays two checkpoints' curves."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from dftlens.layers import LayerChoice
from dftlens_cli.app import app

runner = CliRunner()


def test_compare_two_checkpoints(tiny_dirs, tmp_path):
    layers = tmp_path / "layers.json"
    LayerChoice("tiny", 4, 1, 2, ["en", "fr", "zh"], {}).save(layers)
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--model", str(tiny_dirs["gemma3"]), "--model", str(tiny_dirs["llama"]),
                                 "--label", "before,after", "--layers", str(layers),  # comma list, as eval
                                 "--pairs", "fr:zh", "--max-items", "4", "--max-sentences", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lens = pd.read_csv(out / "compare_lens.csv")
    assert set(lens["model"]) == {"before", "after"}
    html = (out / "compare.html").read_text()
    assert html.count("plotly.js v") == 1  # the library inline once, shared by every figure
    assert "LC (1)" in result.output and "ET (2)" in result.output
    # every figure names its own model(s): the probes of "after" are not titled with the layers' model
    assert "model before vs after (LC/ET layers of tiny)" in html  # the page header names the models compared
    assert "Linear probes per layer \\u2014 after" in html and "Linear probes per layer \\u2014 before" in html


def test_compare_needs_two_models(tiny_dirs, tmp_path):
    result = runner.invoke(app, ["compare", "--model", str(tiny_dirs["llama"]), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "at least two" in result.output


def test_compare_labels_are_unique(tmp_path):
    from dftlens.analysis.compare import model_labels
    from dftlens.errors import DataError

    tft, dft = tmp_path / "runs" / "tft" / "final", tmp_path / "runs" / "dft" / "final"
    tft.mkdir(parents=True)
    dft.mkdir(parents=True)
    assert model_labels([str(tft), str(dft)]) == ["tft/final", "dft/final"]
    assert model_labels(["gemma3-270m", str(tft)]) == ["gemma3-270m", "final"]
    assert model_labels([str(tft), str(dft)], ["TFT", "DFT"]) == ["TFT", "DFT"]
    with pytest.raises(DataError, match="--label"):
        model_labels([str(tft), str(tft)])
    with pytest.raises(DataError, match="--label 'a' is given twice"):
        model_labels([str(tft), str(dft)], ["a", "a"])


def test_compare_takes_comma_lists_and_counts_them(tiny_dirs, tmp_path):
    models = f"{tiny_dirs['gemma3']},{tiny_dirs['llama']}"
    extra = runner.invoke(app, ["compare", "--model", models, "--label", "base,dft4,dft8", "--out", str(tmp_path / "x")])
    assert extra.exit_code == 2 and "Got 3 --label for 2 --model" in extra.output
    twice = runner.invoke(app, ["compare", "--model", models, "--label", "a,a", "--out", str(tmp_path / "y")])
    assert twice.exit_code == 2 and "--label 'a' is given twice" in twice.output


def test_compare_figure_keys_name_the_models(tiny_dirs, tmp_path):
    from dftlens.analysis.compare import compare_models
    from dftlens.analysis.probe_run import ProbeConfig

    cfg = ProbeConfig(pairs=[("fr", "zh")], tasks=["translation"], max_items=4, max_sentences=8)
    result = compare_models([str(tiny_dirs["gemma3"]), str(tiny_dirs["llama"])], cfg, labels=["base", "dft 4"])
    keys = {key: fig for key, _, fig in result.figures()}
    assert "latent_base-vs-dft-4" in keys and {"probes_base", "probes_dft-4"} <= set(keys)
    overlay = keys["probes_base-vs-dft-4"]  # both models' probes on one figure, line style per model
    assert {t.name for t in overlay.data} >= {"lang_id_all · base", "lang_id_all · dft 4", "retrieval · dft 4"}
    assert {t.line.dash for t in overlay.data if t.name.endswith("dft 4")} == {"dash"}
    assert "dft 4" in keys["probes_dft-4"].layout.title.text and "base" in keys["latent_base-vs-dft-4"].layout.title.text
