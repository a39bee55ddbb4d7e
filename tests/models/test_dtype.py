"""Precision and memory of the logit lens: float32 decoding of any model dtype, chunked decoding."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dftlens import load_model
from dftlens.analysis.lens import measure
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items
from dftlens.errors import DftlensError
from dftlens.models.load_settings import resolve_dtype

COLS = ["p_en", "p_target", "entropy_bits"]


def _items(n):
    return translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[:n]


def test_dtype_names_and_auto():
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("fp16", "cuda") is torch.float16
    with pytest.raises(DftlensError, match="Unknown dtype"):
        resolve_dtype("int3", "cpu")


def test_bf16_model_decodes_in_float32_and_chunks_agree(tiny_dirs):
    lm = load_model(str(tiny_dirs["gemma2"]), dtype="bfloat16")
    assert lm.dtype is torch.bfloat16
    resid = lm.capture(lm.tokenize(["the cat"]), lm.hook_names(), positions="last").stack(lm.hook_names())
    assert resid.dtype is torch.bfloat16 and lm.decode(resid).dtype is torch.float32
    items, ts = _items(5), TokenSets(lm.tokenizer)
    whole = measure(lm, items, ts, batch_size=5, progress=False)
    lm.lens_chunk = 1  # one layer of one prompt at a time
    assert lm.lens_rows() == 1
    one = measure(lm, items, ts, batch_size=5, progress=False)
    key = ["item_id", "layer"]
    whole, one = (f.sort_values(key).reset_index(drop=True) for f in (whole, one))
    pd.testing.assert_frame_equal(whole[key + COLS], one[key + COLS], atol=1e-6, rtol=1e-6)


def test_lens_budget_bounds_the_rows_and_the_slices(tiny_models):
    from dftlens.models.decoding import MAX_SLICE, MIN_SLICE, TEMPORARIES

    lm = tiny_models["llama"]
    width = min(MIN_SLICE, lm.vocab_size)
    assert lm.lens_rows(budget_bytes=TEMPORARIES * 4 * width * 10) == 10
    assert lm.lens_rows(budget_bytes=1) == 1
    assert lm.lens_slice(rows=10, budget_bytes=1) == min(MIN_SLICE, lm.vocab_size)
    assert lm.lens_slice(rows=1, budget_bytes=2**40) == min(MAX_SLICE, lm.vocab_size)
    assert lm.lens_memory() > 0


@pytest.mark.embedded
def test_bf16_and_float32_curves_agree_on_the_embedded_model(embedded_model):
    bf16 = load_model("gemma3-270m", dtype="bfloat16")
    assert bf16.dtype is torch.bfloat16
    items = _items(12)
    ts = TokenSets(embedded_model.tokenizer)
    a = measure(embedded_model, items, ts, batch_size=12, progress=False)
    b = measure(bf16, items, ts, batch_size=12, progress=False)
    curve_a = a.groupby("layer")[["p_en", "p_target"]].mean()
    curve_b = b.groupby("layer")[["p_en", "p_target"]].mean()
    diff = (curve_a - curve_b).abs()
    print(f"bf16 vs float32 max |diff| per layer curve: {diff.max().to_dict()}")
    assert len(curve_a) == embedded_model.n_layers
    assert diff.max().max() < 0.02


@pytest.mark.parametrize("verb", ["probe", "lens", "compare", "eval", "train"])
def test_every_model_verb_takes_dtype_and_device(verb):
    from click.testing import CliRunner
    from typer.main import get_command

    from dftlens_cli.app import app

    command = get_command(app).commands[verb]
    flags = {opt for param in command.params for opt in param.opts}
    assert {"--dtype", "--device"} <= flags
    if verb != "train":
        assert "--device-map" in flags
    extra = {"compare": ["--model", "a", "--model", "b"], "train": ["--lc", "off", "--et", "off"]}.get(verb, [])
    bad = CliRunner().invoke(get_command(app), [verb, "--dtype", "int3", *extra])
    assert bad.exit_code == 2 and "int3" in bad.output and "bfloat16" in bad.output


def test_device_map_auto_loads_and_matches(tiny_dirs, tiny_models):
    """accelerate's big-model placement (here everything lands on the CPU) gives the same lens."""
    ref = tiny_models["llama"]
    lm = load_model(str(tiny_dirs["llama"]), device_map="auto")
    batch = ref.tokenize(["the cat", "水"])
    names = ref.hook_names()
    a = ref.log_probs(ref.capture(batch, names, positions="last").stack(names))
    b = lm.log_probs(lm.capture(batch, names, positions="last").stack(names))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(DftlensError, match="not both"):
        load_model(str(tiny_dirs["llama"]), device="cpu", device_map="auto")
