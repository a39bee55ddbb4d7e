"""DftlensHFLM scores exactly what lm-eval's HFLM scores, with less work."""

from __future__ import annotations

import pytest
import torch
from lm_eval.models.huggingface import HFLM

from dftlens import load_model
from dftlens.evaluation.harness import DftlensHFLM
from dftlens.evaluation.runner import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    # On a shared 2-core machine, two OpenMP threads are several times slower than one.
    with torch_threads(1):
        yield


def _requests(tokenizer):
    contexts = ["Question: what is water? Answer:", "Câu hỏi: nước là gì? Trả lời:", "问题：水是什么？答案：", "x"]
    continuations = [" water", " nước đá", " 水", " a", " the sea is blue and long"]
    out = []
    for ctx in contexts:
        for cont in continuations:
            out.append(((ctx, cont), tokenizer(ctx).input_ids, tokenizer(cont, add_special_tokens=False).input_ids))
    # a context longer than the tiny models' sliding window (8 tokens)
    long_ctx = " ".join(["water"] * 30)
    out.append(((long_ctx, " water water"), tokenizer(long_ctx).input_ids,
                tokenizer(" water water", add_special_tokens=False).input_ids))
    return out


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3"])
def test_scores_match_lm_eval(tiny_dirs, family):
    lm = load_model(str(tiny_dirs[family]), backend="nnsight")
    requests = _requests(lm.tokenizer)
    # batch size 3: one context per batch; 8: contexts of different lengths left-padded together
    for batch_size in (3, 8):
        model = DftlensHFLM(lm.hf_model, lm.tokenizer, batch_size=batch_size)
        reference = HFLM._loglikelihood_tokens(model, requests, disable_tqdm=True)  # lm-eval's own path
        shared = model._loglikelihood_tokens(requests, disable_tqdm=True)
        assert model.share_context, "shared-context scoring fell back"
        sparse = model._sparse_tokens(requests, disable_tqdm=True)
        for ref, a, b in zip(reference, shared, sparse, strict=True):
            assert a[0] == pytest.approx(ref[0], abs=1e-3) and a[1] == ref[1]
            assert b[0] == pytest.approx(ref[0], abs=1e-4) and b[1] == ref[1]
    # and the model was not changed by the cache juggling
    with torch.no_grad():
        again = model._loglikelihood_tokens(requests[:3], disable_tqdm=True)
    assert [round(x[0], 3) for x in again] == [round(x[0], 3) for x in shared[:3]]
