"""Held-out NLL equals a plain masked causal-LM loss computed with Hugging Face."""

from __future__ import annotations

import math

import torch

from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.data.parallel import bundled_path
from dftlens.evaluation.heldout import heldout_nll


def test_heldout_nll_matches_hf_loss(tiny_models):
    lm = tiny_models["gemma2"]
    res = heldout_nll(lm, None, "zh", batch_size=3, max_length=512)
    assert res["examples"] >= 60 and len(res["per_example"]) == res["examples"]
    pairs = encode_pairs(load_instructions(str(bundled_path("instructions_heldout.jsonl")), "zh"),
                         PromptFormat(lm.tokenizer), 512, drop_long=True)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for p in pairs[:5]:
            ids = torch.tensor([p.main.ids])
            labels = ids.clone()
            labels[0, : p.main.prefix] = -100
            loss = lm.hf_model(input_ids=ids, labels=labels).loss
            assert math.isclose(float(loss), res["per_example"][pairs.index(p)], rel_tol=1e-4, abs_tol=1e-5)
            total, tokens = total + float(loss) * len(p.main.continuation), tokens + len(p.main.continuation)
    assert math.isfinite(res["nll"]) and res["ppl"] == math.exp(res["nll"])


def test_heldout_nll_scores_the_english_side_too(tiny_models):
    lm = tiny_models["llama"]
    zh = heldout_nll(lm, None, "zh", batch_size=8)
    en = heldout_nll(lm, None, "zh", batch_size=8, english=True)
    assert en["examples"] == zh["examples"] and en["tokens"] != zh["tokens"]
    assert math.isfinite(en["nll"])
