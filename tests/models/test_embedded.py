"""End-to-end truth on the embedded Gemma-3-270M (converted once from its GGUF)."""

from __future__ import annotations

import pytest
import torch

from dftlens.analysis.lens import lens_table, translation_prompt
from dftlens.models import hook_name
from dftlens.models.engine_protocol import last_token_index, position_ids_from_mask

pytestmark = pytest.mark.embedded


def test_embedded_model_shape(embedded_model):
    assert embedded_model.n_layers == 18
    assert embedded_model.vocab_size >= 262_000


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_residuals_and_lens_match_hf(embedded_model, backend):
    lm = embedded_model if backend == "transformer_lens" else embedded_model.with_backend("nnsight")
    batch = lm.tokenize([translation_prompt("eau"), "Le chat"], padding_side="left")
    with torch.no_grad():
        out = lm.hf_model(**batch, output_hidden_states=True, position_ids=position_ids_from_mask(batch["attention_mask"]))
    names = lm.hook_names()
    cap = lm.capture(batch, names, positions="last")
    last = last_token_index(batch["attention_mask"])
    rows = torch.arange(2)
    for layer in (0, 8, 16):
        torch.testing.assert_close(cap[hook_name(layer)], out.hidden_states[layer + 1][rows, last], atol=1e-3, rtol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(lm.unembed(cap[names[-1]]), out.logits[rows, last], atol=1e-3, rtol=1e-3)


def test_english_pivot_for_eau(embedded_model):
    table = lens_table(embedded_model, translation_prompt("eau"), top_k=3)
    middle = table[table["layer"].between(12, 16)]["top_tokens"].str.lower()
    assert middle.str.contains("water").sum() >= 3  # "water" in the middle layers...
    assert "水" in table.iloc[-1]["top_tokens"].split()[0]  # ...and "水" at the top
