"""`dftlens eval` end to end: two tiny checkpoints side by side -> table, CSV, HTML report."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from dftlens.config_files import read_run_config
from dftlens_cli.app import app

runner = CliRunner()


def test_eval_two_models_side_by_side(tiny_dirs, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_dirs["gemma3"]), "-m", str(tiny_dirs["llama"]),
            "--tasks", "shipped,xnli", "--langs", "zh,en", "--limit", "3", "--batch-size", "4",
            "--threads", "1", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns[:6]) == ["model", "task", "language", "metric", "value", "stderr"]
    # 2 models x 2 languages x (acc + f1 + exact_match)
    assert len(frame) == 12
    assert set(frame["task"]) == {"dftlens_mcqa", "dftlens_qa"}
    assert set(frame["metric"]) == {"acc", "f1", "exact_match"}
    assert frame["value"].between(0, 1).all() and (frame["n"] == 3).all()
    assert frame["model"].nunique() == 2
    # the printed table has the difference to the first model
    assert f"Δ {tiny_dirs['llama']}" in result.output
    assert "dftlens_mcqa" in result.output and "exact_match" in result.output
    # xnli's data is not on this machine: a note, and the run went on
    assert "not run: xnli (zh, en): dataset facebook/xnli" in " ".join(result.output.split())
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "plotly" in html.lower() and "difference to" in html and "facebook/xnli" in html
    meta = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert meta["settings"]["limit"] == 3 and len(meta["models"]) == 2 and meta["skipped"]
    # the settings it ran with, in the form --config reads
    saved = read_run_config(out / "run_config.yaml")
    assert saved["models"] == [str(tiny_dirs["gemma3"]), str(tiny_dirs["llama"])]
    assert saved["tasks"] == ["shipped", "xnli"] and saved["langs"] == ["zh", "en"] and saved["limit"] == 3
    assert saved["out"] == str(out) and "overwrite" not in saved

    # the same --out again is refused without --overwrite, before any work
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output and "Traceback" not in again.output


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="exporting figures needs Chromium or Chrome")
def test_eval_saves_figures_as_png_and_svg(tiny_dirs, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_dirs["gemma3"]), "-m", str(tiny_dirs["llama"]), "--tasks", "shipped",
            "--langs", "en", "--limit", "2", "--batch-size", "4", "--threads", "1", "--out", str(out),
            "--figure-format", "png,svg"]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "results.csv")
    metrics = list(dict.fromkeys(frame["metric"]))
    assert set(metrics) == {"acc", "f1", "exact_match"} and frame["value"].between(0, 1).all()
    # next to report.html: one scores and one difference figure per metric, in each format, nothing else
    stems = [f"scores_{m}" for m in metrics] + [f"delta_{m}" for m in metrics]
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        f"{s}.{fmt}" for s in stems for fmt in ("png", "svg"))
    assert (out / "report.html").is_file()
    for stem in stems:
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = (out / "figures" / "scores_acc.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<svg") and "acc (%) by task and language" in svg
    delta = (out / "figures" / "delta_acc.svg").read_text(encoding="utf-8")
    assert "difference to" in delta
    assert read_run_config(out / "run_config.yaml")["figure_format"] == "png,svg"
    assert "figures/*.{png,svg}" in result.output


def test_eval_user_errors_and_task_listing(tmp_path):
    bad = runner.invoke(app, ["eval", "--langs", "viet nam", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Not a language code" in bad.output
    listing = runner.invoke(app, ["eval", "--list-tasks", "--tasks", "paper", "--langs", "vi,ar"],
                            env={"COLUMNS": "250"})
    assert listing.exit_code == 0, listing.output
    for name in ("xnli_vi", "xstorycloze_ar", "mlqa_vi_vi", "m_mmlu_ar", "truthfulqa_vi_mc1", "dftlens_mkqa_ar"):
        assert name in listing.output
    assert "xcopa (ar)" in listing.output and "xstorycloze (vi)" in listing.output


def test_eval_config_file_fills_the_options(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text("tasks: paper\nlangs: [vi, ar]\nlimit: 2\n")
    listing = runner.invoke(app, ["eval", "--list-tasks", "--config", str(config), "--langs", "zh"],
                            env={"COLUMNS": "250"})
    assert listing.exit_code == 0, listing.output
    assert "xnli_zh" in listing.output and "xnli_vi" not in listing.output  # the flag overrides the file
    config.write_text("tasks: paper\nlimit: three\n")
    bad = runner.invoke(app, ["eval", "--list-tasks", "--config", str(config)])
    assert bad.exit_code == 2 and "limit must be an integer, not 'three'" in bad.output


@pytest.mark.embedded
def test_eval_embedded_model_quick(tmp_path):
    result = runner.invoke(app, ["eval", "--langs", "zh", "--limit", "3", "--threads", "1",
                                 "--out", str(tmp_path / "e")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "e" / "results.csv")
    assert set(frame["model"]) == {"gemma3-270m"} and len(frame) == 3
    assert frame["value"].between(0, 1).all()


def test_evaluate_models_takes_the_config_and_models_already_loaded(tiny_dirs):
    from dftlens import load_model
    from dftlens.errors import DftlensError
    from dftlens.evaluation import EvalConfig, evaluate_models

    names = [str(tiny_dirs["gemma3"]), str(tiny_dirs["llama"])]
    cfg = EvalConfig(models=names, tasks=["dftlens_mcqa"], langs=["en"], limit=2, batch_size=4, threads=1,
                     dtype="float32")
    by_name = evaluate_models(cfg)
    first = load_model(names[0], backend=None, dtype="float32")
    given = evaluate_models(cfg, [first, None])  # entry 0 reused, entry 1 loaded by name
    assert given.models == by_name.models == names
    assert len(given.frame) == 2 and set(given.frame["model"]) == set(names)
    pd.testing.assert_frame_equal(given.frame, by_name.frame)
    # one model for a one-name config; the name only labels it (it is never resolved, so need not exist)
    alone = evaluate_models(EvalConfig(models=["my-base"], tasks=["dftlens_mcqa"], langs=["en"], limit=2,
                                       batch_size=4, threads=1), first)
    assert list(alone.frame["model"]) == ["my-base"]
    assert alone.frame["value"].tolist() == by_name.frame["value"].tolist()[:1]
    with pytest.raises(DftlensError, match="1 loaded model.s. for the 2 model.s. of the config"):
        evaluate_models(cfg, first)
