"""`dftlens train` from the command line: clear errors (exit 2) and one end-to-end run."""

from __future__ import annotations

import json

import pytest
from dft_data import instruction_rows, write_jsonl
from typer.testing import CliRunner

from dftlens.config_files import read_run_config
from dftlens_cli.app import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return str(write_jsonl(tmp_path_factory.mktemp("dft_cli") / "pairs.jsonl", instruction_rows(4)))


def run(*args):
    return runner.invoke(app, ["train", *map(str, args)])


def assert_user_error(result, *phrases):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    flat = "".join(result.output.split())  # rich wraps long lines, even inside a path
    for phrase in phrases:
        assert "".join(phrase.split()) in flat, result.output


def test_bad_input_exits_2_with_one_sentence(tmp_path, tiny_dirs, data_file):
    model = tiny_dirs["llama"]
    common = ["--model", model, "--steps", 1, "--batch-size", 2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"en": {"instruction": "a", "output": "b"}, "zh": {"instruction": "c", "output": "d"}}\n{oops\n')
    assert_user_error(run(*common, "--data", bad, "--lc", "off", "--et", "off", "--out", tmp_path / "a"),
                      "bad.jsonl:2: not valid JSON")
    assert_user_error(run(*common, "--data", tmp_path / "missing.jsonl", "--lc-layer", 1, "--et-layer", 2,
                          "--out", tmp_path / "b"), "does not exist")
    assert_user_error(run(*common, "--data", data_file, "--lang", "vi", "--lc", "off", "--et", "off",
                          "--out", tmp_path / "c"), "language 'vi' is not in this example")
    assert_user_error(run(*common, "--data", data_file, "--lc", "bogus", "--out", tmp_path / "d"),
                      "--lc must be one of logits, feature, contrastive, off")
    assert_user_error(run(*common, "--data", data_file, "--lc-layer", 1, "--et-layer", 9, "--out", tmp_path / "e"),
                      "out of range")
    assert_user_error(run(*common, "--data", data_file, "--out", tmp_path / "f"), "No LC layer")
    assert_user_error(run(*common, "--data", data_file, "--max-length", 8, "--lc", "off", "--et", "off",
                          "--out", tmp_path / "g"), "over --max-length 8")
    assert_user_error(run(*common, "--data", data_file, "--layers", tmp_path / "nope.json", "--out", tmp_path / "h"),
                      "does not exist; run `dftlens probe` first")


def test_layers_json_hooks_overwrite_and_resume_rules(tmp_path, tiny_dirs, data_file):
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps({"model": "tiny", "n_layers": 4, "lc_layer": 1, "et_layer": 2,
                                  "hooks": {"lc": "blocks.1.hook_resid_post", "et": "blocks.2.hook_resid_mid"}}))
    out = tmp_path / "run"
    args = ["--model", tiny_dirs["gemma3"], "--data", data_file, "--layers", layers, "--lc", "logits",
            "--et", "feature", "--steps", 2, "--batch-size", 2, "--out", out, "--no-progress"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "step" in result.output and "tft" in result.output and "et" in result.output
    saved = json.loads((out / "final" / "run_config.json").read_text())
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [".dftlens-manifest.json", "log.jsonl",
                                                                     "run_config.yaml"]  # one settings file
    assert saved["et_hook"] == "blocks.2.hook_resid_mid"  # used as written, not rebuilt from the index
    assert_user_error(run(*args), "already holds a run", "--overwrite")
    assert_user_error(run("--resume", out, "--steps", 5), "--resume continues a run with its saved settings",
                      "--steps")
    assert_user_error(run("--resume", out), "already at step 2 of 2")
    assert_user_error(run("--resume", tmp_path / "empty"), "no dftlens checkpoint")
    # run_config.yaml reruns the run: the same TrainConfig, --out and --overwrite given on top
    rerun_config = read_run_config(out / "run_config.yaml")
    assert rerun_config["lc_signal"] == "logits" and rerun_config["steps"] == 2 and rerun_config["layers"] == str(layers)
    again = run("--config", out / "run_config.yaml", "--out", tmp_path / "again", "--no-progress")
    assert again.exit_code == 0, again.output
    first, second = (read_run_config(d / "run_config.yaml") for d in (out, tmp_path / "again"))
    assert {**first, "out": None} == {**second, "out": None}
    assert_user_error(run("--resume", out, "--config", out / "run_config.yaml"),
                      "--resume continues a run with its saved settings")


@pytest.mark.embedded
def test_train_embedded_model_end_to_end(tmp_path):
    """A few LoRA steps on Gemma-3-270M; the checkpoint loads in transformers and in dftlens."""
    from transformers import PreTrainedModel

    from dftlens import load_model

    out = tmp_path / "e2e"
    result = run("--model", "gemma3-270m", "--lc-layer", 5, "--et-layer", 12, "--lc", "feature", "--et", "logits",
                 "--steps", 2, "--batch-size", 2, "--max-length", 128, "--lora", "--lora-r", 4, "--limit", 8,
                 "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["et"] > 0 and r["lc"] >= 0 for r in log)
    # load_model reads a local directory with AutoModelForCausalLM.from_pretrained (and the tokenizer):
    # one load checks both that transformers loads the checkpoint and that dftlens accepts it.
    lm = load_model(str(out / "final"))
    assert isinstance(lm.hf_model, PreTrainedModel) and lm.n_layers == 18
    assert lm.tokenize(["你好"])["input_ids"][0, 0] == lm.tokenizer.bos_token_id
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "config.json").exists()


def test_report_to_tensorboard_alongside_the_log(tmp_path, tiny_dirs, data_file):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    result = run("--model", tiny_dirs["llama"], "--data", data_file, "--lc-layer", 1, "--et-layer", 2, "--steps", 2,
                 "--batch-size", 2, "--report-to", "tensorboard", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    events = list((out / "tracking").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    scalars = [e.value for e in acc.Scalars("loss")]
    assert scalars == pytest.approx([r["loss"] for r in log], rel=1e-5)
    assert_user_error(run("--model", tiny_dirs["llama"], "--data", data_file, "--lc", "off", "--et", "off",
                          "--report-to", "bogus", "--out", tmp_path / "bad"), "--report-to must be one of")


def test_train_config_takes_load_settings_and_reads_old_flat_files(tmp_path):
    from dftlens.dft.config import TrainConfig
    from dftlens.errors import DftlensError
    from dftlens.models.load_settings import LoadSettings

    # a run_config.json as runs wrote it before TrainConfig reused LoadSettings (flat keys, old signal names)
    old = {"out": "runs/x", "model": "gemma3-270m", "lc": "off", "et": "off", "steps": 3, "backend": "nnsight",
           "device": "cpu", "dtype": "bfloat16", "trust_remote_code": False, "lc_hook": "blocks.1.hook_resid_post",
           "completed_steps": 3}
    (tmp_path / "run_config.json").write_text(json.dumps(old))
    cfg = TrainConfig.load(tmp_path / "run_config.json")
    assert isinstance(cfg, LoadSettings)
    assert cfg.load_kwargs() == {"device": "cpu", "dtype": "bfloat16", "device_map": None, "trust_remote_code": False}
    assert (cfg.backend, cfg.lc_signal, cfg.steps) == ("nnsight", "off", 3)
    assert TrainConfig(lc_signal="off", et_signal="off").dtype == "float32"  # training's own default
    with pytest.raises(DftlensError, match="does not take a device map"):
        TrainConfig(lc_signal="off", et_signal="off", device_map="auto")
    assert_user_error(run("--lc", "off", "--et", "off", "--backend", "tl"),
                      "--backend must be one of transformer_lens, nnsight, not 'tl'")
    result = run("--device-map", "auto")
    assert result.exit_code == 2 and "No such option: --device-map" in result.output
    # the same flat keys in a YAML --config still fill the options
    (tmp_path / "old.yaml").write_text("lc: 'off'\net: 'off'\ndevice: cpu\ndtype: bfloat16\ntrust_remote_code: false\n"
                                       "device_map: null\nsteps: 0\n")
    assert_user_error(run("--config", tmp_path / "old.yaml"), "--steps must be at least 1, not 0")
