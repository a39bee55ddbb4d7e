"""One layer choice from `dftlens probe` to the loss: probe -> layers.json -> train, on a tiny model.

No hand-written JSON: the file train reads is the one probe wrote.
"""

from __future__ import annotations

import json

import pytest
import yaml
from dft_data import instruction_rows, write_jsonl
from typer.testing import CliRunner

from dftlens.dft.config import TrainConfig
from dftlens.layers import LayerChoice
from dftlens_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return str(write_jsonl(tmp_path_factory.mktemp("probe_to_train") / "pairs.jsonl", instruction_rows(4)))


def test_probe_layers_json_train(tiny_dirs, data_file, tmp_path):
    model = str(tiny_dirs["llama"])
    probe = runner.invoke(app, ["probe", "--model", model, "--out", str(tmp_path / "probe"), "--pairs", "fr:zh",
                                "--max-items", "4", "--no-probes"])
    assert probe.exit_code == 0, probe.output
    choice = LayerChoice.load(tmp_path / "probe")
    assert 0 < choice.lc_layer < choice.et_layer < choice.n_layers - 1
    assert set(choice.evidence.support) == {"lc", "et"}  # the bootstrap ran
    assert "No probes ran" in " ".join(choice.provisional)  # a 4-item run without probes is provisional
    assert "warning:" in probe.stderr and "is provisional" in probe.stderr
    assert f"LC layer {choice.lc_layer} ({choice.evidence.lc_decided_by}; chosen in" in probe.stdout

    train = runner.invoke(app, ["train", "--model", model, "--data", data_file, "--layers",
                                str(tmp_path / "probe" / "layers.json"), "--lc", "logits", "--et", "feature",
                                "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "run"), "--no-progress"])
    assert train.exit_code == 0, train.output
    assert "warning:" in train.stderr and "is provisional" in train.stderr  # repeated, not refused
    saved = json.loads((tmp_path / "run" / "final" / "run_config.json").read_text())
    assert (saved["lc_hook"], saved["et_hook"]) == (choice.hooks["lc"], choice.hooks["et"])
    assert (saved["lc_signal"], saved["et_signal"]) == ("logits", "feature")

    moved = TrainConfig(model=model, layers=str(tmp_path / "probe"), et_layer=choice.et_layer + 1).layer_choice(
        choice.n_layers)
    assert moved.et_layer == choice.et_layer + 1 and moved.evidence.overrides == {"et": choice.et_layer + 1}
    assert moved.evidence.et_decided_by == "user override" and moved.lc_layer == choice.lc_layer


def test_two_block_model_with_explicit_layers_is_accepted(tmp_path):
    """Issue 18 item 18: overrides apply before the rule's 4-block minimum, checked before the model loads."""
    from transformers import AutoModelForCausalLM

    from conftest import _shared_tokenizer, tiny_config

    tokenizer = _shared_tokenizer()
    config = tiny_config("llama", len(tokenizer))
    config.num_hidden_layers = 2
    model_dir = tmp_path / "two"
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    args = ["probe", "--model", str(model_dir), "--pairs", "fr:zh", "--max-items", "2", "--no-probes"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "needs at least 4 layers" in refused.output
    assert "Loading" not in refused.stderr  # refused from config.json, before the weights load
    given = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--lc-layer", "0", "--et-layer", "1"])
    assert given.exit_code == 0, given.output
    choice = LayerChoice.load(tmp_path / "b")
    assert (choice.lc_layer, choice.et_layer, choice.evidence.overrides) == (0, 1, {"lc": 0, "et": 1})


def test_old_signal_names_in_saved_configs_still_load(tmp_path):
    cfg = TrainConfig.from_dict({"lc": "logits", "et": "off", "lc_layer": 1})
    assert (cfg.lc_signal, cfg.et_signal) == ("logits", "off")
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"lc": "off", "et": "off", "steps": 0}))
    result = runner.invoke(app, ["train", "--config", str(old)])  # read with the new names: steps 0 is the error
    assert result.exit_code == 2 and "--steps must be at least 1" in result.output, result.output
