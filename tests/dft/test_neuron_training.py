"""--train-neurons: only the chosen MLP neurons' rows/columns change; every other weight is bit-identical."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
from dft_data import instruction_rows, write_jsonl
from safetensors.torch import load_file

from dftlens.dft.config import TrainConfig
from dftlens.dft.neuron_mask import read_neuron_file
from dftlens.dft.trainer import train
from dftlens.errors import DataError, DftlensError

pytestmark = pytest.mark.usefixtures("one_thread")


def neurons_csv(path, rows):
    """A neurons.csv as `dftlens neurons` writes it: layer, neuron, languages, entropy, p_<lang>."""
    frame = pd.DataFrame(rows, columns=["layer", "neuron", "languages"])
    frame["entropy"], frame["p_zh"], frame["p_en"] = 0.1, 0.9, 0.05
    frame.to_csv(path, index=False)
    return str(path)


# Independently of dftlens.models.mlp_layout: (parameter name pattern, axis of the neuron) per family.
OWNED = {
    "llama": [("model.layers.{l}.mlp.gate_proj.weight", 0), ("model.layers.{l}.mlp.up_proj.weight", 0),
              ("model.layers.{l}.mlp.down_proj.weight", 1)],
    "gpt2": [("transformer.h.{l}.mlp.c_fc.weight", 1), ("transformer.h.{l}.mlp.c_fc.bias", 0),
             ("transformer.h.{l}.mlp.c_proj.weight", 0)],
}


@pytest.mark.parametrize("family,lc,et", [("llama", "feature", "logits"), ("gpt2", "off", "off")])
def test_only_the_chosen_neurons_weights_change(family, lc, et, family_dir, tmp_path):
    model_dir = family_dir(family)
    data = write_jsonl(tmp_path / "p.jsonl", instruction_rows(6))
    file = neurons_csv(tmp_path / "neurons.csv", [(0, 3, "zh"), (0, 10, "zh;ja"), (1, 5, "zh"), (1, 7, "en"),
                                                  (0, 2, "")])
    cfg = TrainConfig(out=str(tmp_path / "run"), model=str(model_dir), data=str(data), lang="zh", lc_signal=lc, et_signal=et,
                      lc_layer=0, et_layer=1, steps=2, batch_size=2, lr=1e-2, warmup_ratio=0.0,
                      train_neurons=file)
    run = train(cfg, progress=False)
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(run.final / "model.safetensors"))
    chosen = {0: [3, 10], 1: [5]}  # zh rows only; neuron 7 (en) and 2 (none) stay
    owned = {pattern.format(l=layer): (dim, units) for layer, units in chosen.items()
             for pattern, dim in OWNED[family]}
    for name, old in before.items():
        new = after[name]
        if name not in owned:
            assert torch.equal(old, new), name
            continue
        dim, units = owned[name]
        keep = torch.ones(old.shape[dim], dtype=torch.bool)
        keep[units] = False
        assert torch.equal(old.index_select(dim, keep.nonzero()[:, 0]), new.index_select(dim, keep.nonzero()[:, 0])), name
        for unit in units:
            assert not torch.equal(old.select(dim, unit), new.select(dim, unit)), (name, unit)


def test_neuron_file_selection_and_bad_files(tmp_path):
    file = neurons_csv(tmp_path / "n.csv", [(2, 3, "zh"), (2, 1, "zh;ja"), (4, 0, "ja"), (5, 9, "")])
    assert read_neuron_file(file, ["zh"]) == {2: [1, 3]}
    assert read_neuron_file(file, ["ja"]) == {2: [1], 4: [0]}
    assert read_neuron_file(file, None) == {2: [1, 3], 4: [0], 5: [9]}
    with pytest.raises(DataError, match="no neuron specific to fr; its languages are ja, zh"):
        read_neuron_file(file, ["fr"])
    pd.DataFrame({"layer": [1], "unit": [2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="no neuron, languages column"):
        read_neuron_file(tmp_path / "bad.csv", None)
    with pytest.raises(DataError, match="not a file"):
        read_neuron_file(tmp_path / "missing.csv", None)
    cfg = dict(lc_signal="off", et_signal="off", train_neurons=file)
    assert TrainConfig(**cfg, lang="ja").neuron_languages() == ["ja"]
    assert TrainConfig(**cfg, neuron_langs="all").neuron_languages() is None
    for clash, words in (({"lora": True}, "--lora"), ({"weight_decay": 0.1}, "--weight-decay"),
                         ({"fsdp": True}, "--fsdp")):
        with pytest.raises(DftlensError, match=f"cannot be combined with {words}"):
            TrainConfig(**cfg, **clash)


def test_neuron_out_of_range_is_one_sentence(tiny_dirs, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", instruction_rows(4))
    file = neurons_csv(tmp_path / "n.csv", [(1, 4096, "zh")])
    cfg = TrainConfig(out=str(tmp_path / "run"), model=str(tiny_dirs["llama"]), data=str(data), lc_signal="off", et_signal="off",
                      steps=1, batch_size=2, train_neurons=file)
    with pytest.raises(DftlensError, match="have 128 neurons"):
        train(cfg, progress=False)


def test_cli_refuses_a_missing_neuron_file_before_loading(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dftlens_cli", "train", "--lc", "off", "--et", "off",
                           "--train-neurons", str(tmp_path / "none.csv"), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --train-neurons") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
