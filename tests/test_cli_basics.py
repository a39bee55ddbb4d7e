"""The CLI: user errors are one sentence and exit code 2, never a traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from dftlens_cli.app import app

runner = CliRunner()


def test_models_lists_aliases_and_offline_status():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for alias in ("gemma3-270m", "llama2-7b", "gemma2-2b"):
        assert alias in result.output
    assert "not downloaded" in result.output


def test_unknown_model_is_one_sentence_and_exit_2():
    result = runner.invoke(app, ["lens", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "Unknown model 'no-such-model'" in result.output
    assert "Traceback" not in result.output


def test_missing_hub_model_says_how_to_get_it():
    result = runner.invoke(app, ["lens", "--model", "llama2-7b"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "hf download meta-llama/Llama-2-7b-hf" in " ".join(result.output.split())
