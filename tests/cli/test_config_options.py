"""Options generated from a config dataclass; --config files; run_config.yaml round trips."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import typer
from typer.testing import CliRunner

from dftlens.config_files import read_run_config, setting, write_run_config
from dftlens.errors import DftlensError
from dftlens_cli.common import App, user_errors
from dftlens_cli.config_options import RunSettings, config_options


@dataclass
class ToyConfig:
    steps: int = setting(100, "Optimizer steps.")
    lr: Optional[float] = setting(None, "Peak learning rate.")
    signal: str = setting("feature", "Which signal.", choices=("logits", "feature", "off"))
    pairs: list[tuple[str, str]] = setting(default_factory=lambda: [("fr", "zh"), ("de", "ja")], help="Pairs.")
    langs: Optional[list[str]] = setting(None, "Languages.")
    max_items: Optional[int] = setting(32, "Prompts per pair (0 = all).", none_as=0)
    lora: bool = setting(False, "Train LoRA adapters.", flag="--lora")
    detach: bool = setting(True, "Detach the English side.")
    hidden: int = setting(7, "Only config files set this.", cli=False)
    models: list[str] = setting(default_factory=lambda: ["a"], help="Models.", flag="--model", short=("-m",),
                                repeat=True)
    plain_field: int = field(default=3)


def make_app(seen: dict, **kw) -> typer.Typer:
    app = App(add_completion=False)

    @app.command()
    @user_errors
    @config_options(ToyConfig, **kw)
    def toy(cfg: ToyConfig, out: Path = typer.Option(Path("runs/toy"), help="Output directory."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace."),
            settings: RunSettings = None) -> None:
        """A toy verb."""
        seen.update(cfg=cfg, out=out, overwrite=overwrite, settings=settings)
        settings.save(out)

    @app.command()
    def other() -> None:  # a second command keeps `toy` a subcommand
        pass

    return app


runner = CliRunner()


def run(args, **kw):
    seen: dict = {}
    result = runner.invoke(make_app(seen, **kw), args, env={"COLUMNS": "200"})
    return result, seen


def test_help_comes_from_the_fields():
    result, _ = run(["toy", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for snippet in ("--steps", "Optimizer steps. [default: 100]", "--signal", "One of: logits, feature, off.",
                    "[default: fr:zh,de:ja]", "--max-items", "[default: 32]", "--lora", "--detach", "--no-detach",
                    "--config", "--out", "--overwrite"):
        assert snippet in text, snippet
    assert "--hidden" not in text and "--no-lora" not in text and "<bool>" not in text


def test_defaults_flags_and_conversions(tmp_path):
    result, seen = run(["toy", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == ToyConfig()
    result, seen = run(["toy", "--steps", "5", "--lr", "2e-4", "--pairs", "fr:zh, de-en", "--langs", "vi,ar",
                        "--max-items", "0", "--lora", "--no-detach", "--signal", "off", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == ToyConfig(steps=5, lr=2e-4, pairs=[("fr", "zh"), ("de", "en")], langs=["vi", "ar"],
                                    max_items=None, lora=True, detach=False, signal="off")
    result, seen = run(["toy", "--model", "x,y", "-m", "z", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"].models == ["x", "y", "z"]


def test_verb_defaults_override_the_dataclass(tmp_path):
    result, seen = run(["toy", "--out", str(tmp_path / "a")], defaults={"max_items": 40, "pairs": [("fr", "zh")]})
    assert result.exit_code == 0, result.output
    assert seen["cfg"].max_items == 40 and seen["cfg"].pairs == [("fr", "zh")]
    assert "[default: 40]" in run(["toy", "--help"], defaults={"max_items": 40})[0].output
    assert "Prompts per task." in run(["toy", "--help"], helps={"max_items": "Prompts per task."})[0].output


def test_config_file_fills_and_flags_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("steps: 7\nlr: 2e-5\npairs: [[ru, en]]\nhidden: 9\nlora: true\nout: " + str(tmp_path / "o") + "\n")
    result, seen = run(["toy", "--config", str(cfg), "--steps", "8"])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == ToyConfig(steps=8, lr=2e-5, pairs=[("ru", "en")], hidden=9, lora=True)
    assert seen["out"] == tmp_path / "o"
    assert seen["settings"].given == {"steps", "lr", "pairs", "hidden", "lora", "out"}


def test_run_config_reruns_the_same_run(tmp_path):
    args = ["toy", "--steps", "3", "--pairs", "zh:fr", "--max-items", "0", "--out", str(tmp_path / "first")]
    result, first = run(args)
    assert result.exit_code == 0, result.output
    saved = tmp_path / "first" / "run_config.yaml"
    assert saved.read_text().startswith("# dftlens toy, written by dftlens")
    values = read_run_config(saved)
    assert values["steps"] == 3 and values["pairs"] == [["zh", "fr"]] and values["max_items"] is None
    assert "overwrite" not in values
    result, again = run(["toy", "--config", str(saved), "--out", str(tmp_path / "second")])
    assert result.exit_code == 0, result.output
    assert again["cfg"] == first["cfg"]
    assert read_run_config(tmp_path / "second" / "run_config.yaml") == {**values, "out": str(tmp_path / "second")}


@pytest.mark.parametrize("text, message", [
    ("stepz: 3\n", "unknown option(s) stepz for dftlens toy"),
    ("steps: many\n", "steps must be an integer, not 'many'"),
    ("signal: both\n", "signal must be one of logits, feature, off, not 'both'"),
    ("- 1\n- 2\n", "must be a mapping of option names to values"),
    ("steps: [1\n", "is not valid YAML (line 2)"),
])
def test_bad_config_files_are_one_sentence(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result, seen = run(["toy", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and not seen
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_bad_flag_values(tmp_path):
    result, seen = run(["toy", "--signal", "both", "--out", str(tmp_path)])
    assert result.exit_code == 2 and not seen
    assert "--signal must be one of logits, feature, off, not 'both'" in result.output
    result, _ = run(["toy", "--pairs", "fr", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "A --pairs entry needs two different languages" in result.output
    result, _ = run(["toy", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_write_run_config_types(tmp_path):
    path = write_run_config(tmp_path / "r.yaml", {"p": Path("/x"), "t": (1, 2), "n": None, "s": "中文"}, "probe")
    assert read_run_config(path) == {"p": "/x", "t": [1, 2], "n": None, "s": "中文"}
    # one option per line, as users edit it (not one {p: /x, ...} line), lists inline; "off" stays text
    scalars = write_run_config(tmp_path / "s.yaml", {"steps": 3, "lc_signal": "off", "lr": 2e-5}, "train")
    assert scalars.read_text(encoding="utf-8").splitlines()[1:] == ["steps: 3", "lc_signal: 'off'", "lr: 2.0e-05"]
    pairs = write_run_config(tmp_path / "p.yaml", {"pairs": [("fr", "zh"), ("de", "ja")]}, "probe")
    assert pairs.read_text(encoding="utf-8").splitlines()[1:] == ["pairs: [[fr, zh], [de, ja]]"]
    assert read_run_config(scalars) == {"steps": 3, "lc_signal": "off", "lr": 2e-5}
    with pytest.raises(DftlensError, match="does not exist"):
        read_run_config(tmp_path / "nope.yaml")


@dataclass
class ToyLoad:
    device: Optional[str] = setting(None, "Device.")
    dtype: str = setting("auto", "Dtype.", choices=("auto", "float32"))


def test_several_config_classes(tmp_path):
    app = App(add_completion=False)
    seen: dict = {}

    @app.command()
    @user_errors
    @config_options(ToyConfig, ToyLoad)
    def toy(cfg: ToyConfig, load: ToyLoad, out: Path = typer.Option(Path("o")),
            settings: RunSettings = None) -> None:
        seen.update(cfg=cfg, load=load, settings=settings)
        settings.save(out)

    @app.command()
    def other() -> None:
        pass

    result = runner.invoke(app, ["toy", "--steps", "2", "--dtype", "float32", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == ToyConfig(steps=2) and seen["load"] == ToyLoad(dtype="float32")
    saved = read_run_config(tmp_path / "run_config.yaml")
    assert saved["steps"] == 2 and saved["dtype"] == "float32" and saved["device"] is None

    with pytest.raises(TypeError, match="steps is a field of ToyConfig and of ToyConfig"):
        config_options(ToyConfig, ToyConfig)
