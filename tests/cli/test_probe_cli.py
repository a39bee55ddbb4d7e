"""`dftlens probe` end to end: outputs, the no-overwrite rule, and the embedded model's pivot."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from dftlens.config_files import read_run_config
from dftlens_cli.app import app

runner = CliRunner()
SMALL = ["--max-items", "6", "--max-sentences", "12", "--probe-langs", "en,zh,fr,de"]


def test_probe_writes_outputs_and_refuses_to_overwrite(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    args = ["probe", "--model", str(tiny_dirs["gemma3"]), "--out", str(out), "--pairs", "fr:zh", *SMALL]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    for name in ("layers.json", "lens.csv", "lens_items.csv", "probes.csv", "report.html"):
        assert (out / name).is_file()
    layers = json.loads((out / "layers.json").read_text())
    assert layers["hooks"]["lc"] == f"blocks.{layers['lc_layer']}.hook_resid_post"
    assert 0 < layers["lc_layer"] < layers["et_layer"] < layers["n_layers"] - 1
    lens = pd.read_csv(out / "lens.csv")
    assert {"task", "input_lang", "target_lang", "layer", "p_en", "p_target", "entropy_bits", "n_items",
            "p_en_lo", "p_en_hi"} <= set(lens.columns)
    assert set(pd.read_csv(out / "probes.csv")["probe"]) >= {"lang_id_all", "retrieval"}
    saved = read_run_config(out / "run_config.yaml")  # what `dftlens probe --config` reads back
    assert saved["pairs"] == [["fr", "zh"]] and saved["max_items"] == 6 and saved["probe_langs"] == ["en", "zh", "fr", "de"]
    assert saved["model"] == str(tiny_dirs["gemma3"]) and saved["out"] == str(out) and "overwrite" not in saved

    before = (out / "layers.json").read_text()
    again = runner.invoke(app, args + ["--lc-layer", "1", "--et-layer", "2"])
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output
    assert (out / "layers.json").read_text() == before
    forced = runner.invoke(app, args + ["--lc-layer", "1", "--et-layer", "2", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "layers.json").read_text())["evidence"]["lc_decided_by"] == "user override"


def test_probe_bad_layer_and_bad_pair_are_user_errors(tiny_dirs, tmp_path):
    base = ["probe", "--model", str(tiny_dirs["llama"]), "--no-probes", "--max-items", "4"]
    bad_layer = runner.invoke(app, base + ["--out", str(tmp_path / "a"), "--et-layer", "9"])
    assert bad_layer.exit_code == 2 and "out of range" in bad_layer.output
    bad_pair = runner.invoke(app, base + ["--out", str(tmp_path / "b"), "--pairs", "fr"])
    assert bad_pair.exit_code == 2 and "two different languages" in bad_pair.output
    missing = runner.invoke(app, base + ["--out", str(tmp_path / "c"), "--pairs", "fr:xx"])
    assert missing.exit_code == 2 and "'xx'" in missing.output
    bad_format = runner.invoke(app, base + ["--out", str(tmp_path / "d"), "--figure-format", "png,gif"])
    assert bad_format.exit_code == 2 and "gif" in bad_format.output and "Traceback" not in bad_format.output
    assert not (tmp_path / "a" / "layers.json").exists() and not (tmp_path / "d").exists()


def test_no_probes_writes_a_readable_probes_csv_and_the_summary_fits_80_columns(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["probe", "--model", str(tiny_dirs["llama"]), "--no-probes", "--max-items", "4",
                                 "--pairs", "fr:zh", "--tasks", "translation", "--out", str(out)])
    assert result.exit_code == 0, result.output
    probes = pd.read_csv(out / "probes.csv")  # a header and no rows, not a 1-byte file pandas refuses
    assert probes.empty and {"layer", "probe", "metric", "value"} <= set(probes.columns)
    table = result.stdout.split("\n\n")[0].splitlines()
    assert table[0].split()[:4] == ["task", "pair", "subset", "n"] and len(table) > 1
    # one line per row at 80 columns and in a log (rich folds longer lines, so check nothing was folded)
    assert all(len(line) <= 80 for line in table) and table[0].rstrip().endswith("max H"), table
    assert all(line.split()[0] == "translation" for line in table[1:]), table


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="exporting figures needs Chromium or Chrome")
def test_probe_saves_figures_as_png_and_svg(tiny_dirs, tmp_path):
    out = tmp_path / "run"
    args = ["probe", "--model", str(tiny_dirs["llama"]), "--no-probes", "--max-items", "4", "--pairs", "fr:zh",
            "--tasks", "translation", "--out", str(out), "--figure-format", "png,svg"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert {"latent.png", "latent.svg", "entropy.png", "entropy.svg", "items.png", "latent_log.svg"} <= set(names)
    assert all(n.endswith((".png", ".svg")) for n in names)  # no temporary files left
    assert (out / "figures" / "latent.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out / "figures" / "latent.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and "probability" in svg


@pytest.mark.embedded
def test_embedded_probe_shows_the_english_pivot(tmp_path):
    out = tmp_path / "probe"
    result = runner.invoke(app, ["probe", "--out", str(out), "--pairs", "fr:zh,de:ja", "--tasks", "translation",
                                 "--max-items", "24", "--max-sentences", "30", "--probe-langs", "en,zh,fr,de,ja"])
    assert result.exit_code == 0, result.output
    lens = pd.read_csv(out / "lens.csv")
    last = lens["layer"].max()
    assert set(lens["subset"]) == {"all", "correct"}
    for src, tgt in [("fr", "zh"), ("de", "ja")]:
        pair = lens[(lens["input_lang"] == src) & (lens["target_lang"] == tgt)]
        curve = pair[pair["subset"] == "all"].set_index("layer")
        right = pair[pair["subset"] == "correct"].set_index("layer")
        # Items answered correctly: fewer of them, and (by definition) more target mass at the end.
        assert 0 < right["n_items"].iloc[0] < curve["n_items"].iloc[0]
        assert right.loc[last, "p_target"] > curve.loc[last, "p_target"]
        en_peak = curve["p_en"].idxmax()
        assert 10 <= en_peak < last  # English peaks in the middle-upper layers...
        assert curve.loc[last, "p_target"] > curve.loc[last, "p_en"]  # ...the target language wins at the end
        assert curve.loc[en_peak, "p_en"] > curve.loc[en_peak - 4, "p_en"]
    layers = json.loads((out / "layers.json").read_text())
    assert 0 < layers["lc_layer"] < layers["et_layer"] < last


def test_python_save_writes_the_one_settings_file_that_config_reruns(tiny_dirs, tmp_path):
    from dftlens import load_model
    from dftlens.analysis.probe_run import ProbeConfig, run_probe

    model = str(tiny_dirs["llama"])
    cfg = ProbeConfig(pairs=[("fr", "zh")], tasks=["translation"], max_items=4, run_probes=False)
    result = run_probe(load_model(model), cfg, progress=False)
    result.save(tmp_path / "api", report=False)
    assert not (tmp_path / "api" / "config.json").exists()
    saved = read_run_config(tmp_path / "api" / "run_config.yaml")
    assert saved["pairs"] == [["fr", "zh"]] and saved["max_items"] == 4 and saved["run_probes"] is False
    rerun = runner.invoke(app, ["probe", "--config", str(tmp_path / "api" / "run_config.yaml"), "--model", model,
                                "--out", str(tmp_path / "cli")])
    assert rerun.exit_code == 0, rerun.output
    assert read_run_config(tmp_path / "cli" / "run_config.yaml")["max_items"] == 4
    lens = [pd.read_csv(tmp_path / d / "lens.csv") for d in ("api", "cli")]
    pd.testing.assert_frame_equal(*lens)
