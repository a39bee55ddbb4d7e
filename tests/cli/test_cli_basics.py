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


def test_version():
    from dftlens import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"dftlens {__version__}"


def test_help_has_no_type_marker_on_flags():
    for verb in ("probe", "train", "eval", "compare", "lens"):
        result = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, verb
        assert "--overwrite" in result.output or verb == "lens"
    assert "<int>" in runner.invoke(app, ["probe", "--help"], env={"COLUMNS": "200"}).output  # values keep theirs


def test_command_modules_do_not_import_app():
    """app.py imports the command modules, so they must not import it back (no circle)."""
    import ast
    from pathlib import Path

    import dftlens_cli

    for path in Path(dftlens_cli.__file__).parent.glob("*.py"):
        if path.name in ("app.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert not (node.level == 1 and node.module == "app"), path.name
                assert not (node.level == 1 and node.module is None and "app" in names), path.name
                assert not (node.module or "").startswith("dftlens_cli.app"), path.name
                # no command borrows another command's private helpers
                assert not (node.level == 1 and any(n.startswith("_") for n in names)), path.name


def test_usage_errors_have_the_same_style():
    result = runner.invoke(app, ["probe", "--max-items", "many"])
    assert result.exit_code == 2
    assert result.output.startswith("error: Invalid value for '--max-items'")
    assert "probe --help`)" in result.output and "╭" not in result.output
    result = runner.invoke(app, ["frob"])
    assert result.exit_code == 2 and result.output.startswith("error: No such command 'frob'.")


def test_help_says_the_logit_lens_line_only_where_the_verb_uses_the_lens():
    def helps(verb):
        text = runner.invoke(app, [verb, "--help"], env={"COLUMNS": "2000"}).output
        return " ".join(text.split())  # rich's box and line breaks do not matter

    for verb in ("probe", "lens", "compare"):
        assert "The logit lens's head product runs in it" in helps(verb), verb
    for verb in ("eval", "patch", "neurons", "steer"):
        text = helps(verb)
        assert "logit lens" not in text and "Weights dtype" in text, verb
    assert "head product" not in helps("train")
    assert "--figure-format" in helps("patch") and "--device" in helps("patch") and "--dtype" in helps("patch")
