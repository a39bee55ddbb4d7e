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


def _direct(hf_model, requests) -> list[float]:
    """Hugging Face's own forward, one unpadded request at a time (no mask, no position ids):
    the summed log-probability of each continuation."""
    out = []
    for _, context, continuation in requests:
        ids = torch.tensor([context + continuation[:-1]])
        with torch.no_grad():
            log_probs = torch.log_softmax(hf_model(ids).logits[0].float(), dim=-1)
        picked = log_probs[len(context) - 1:].gather(1, torch.tensor(continuation).unsqueeze(1))
        out.append(float(picked.sum()))
    return out


@pytest.mark.parametrize("family", ["bloom", "llama"])
def test_scores_equal_hugging_face_and_position_ids_follow_the_family(family_dir, family):
    # BLOOM's forward takes no position ids (ALiBi from the mask): the family table says so, and
    # the harness must not pass them; Llama needs them for its left-padded contexts.
    lm = load_model(str(family_dir(family)), backend=None)  # as dftlens eval loads it
    requests = _requests(lm.tokenizer)
    expected = _direct(lm.hf_model, requests)
    takes = family != "bloom"
    passed: list[bool] = []
    hook = lm.hf_model.register_forward_pre_hook(
        lambda module, args, kwargs: passed.append("position_ids" in kwargs), with_kwargs=True)
    try:
        for batch_size in (3, 8):
            model = DftlensHFLM(lm.hf_model, lm.tokenizer, batch_size=batch_size)
            assert model.position_ids is takes
            passed.clear()
            shared = model._loglikelihood_tokens(requests, disable_tqdm=True)
            assert model.share_context, "shared-context scoring fell back"
            assert passed and set(passed) == {takes}  # every shared-context pass, with or without
            sparse = model._sparse_tokens(requests, disable_tqdm=True)
            for want, a, b in zip(expected, shared, sparse, strict=True):
                assert a[0] == pytest.approx(want, abs=1e-4)
                assert b[0] == pytest.approx(want, abs=1e-4)
            assert len({round(a[0], 2) for a in shared}) > len(requests) // 2  # real, varied scores
    finally:
        hook.remove()
