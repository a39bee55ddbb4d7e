"""The one lens kernel: its one pass over vocabulary slices equals the full log-softmax reductions
(the path the probe took before it), on random logits and on the tests' models; the embedded
model's lens outputs are unchanged to 1e-6 in float32."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from dftlens.analysis.lens import measure
from dftlens.analysis.token_sets import TokenSets
from dftlens.analysis.lens_rows import batch_rows, item_set_tensors
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items
from dftlens.models import decoding
from dftlens.models.lens_kernel import cap_logits, project, reduce_logits

NUMERIC = ["p_en", "p_target", "p_input", "entropy_bits", "share_en", "share_target", "share_input", "share_other",
           "p_en_exclusive", "p_en_drop", "p_en_keep"]


def _old_stats(logp: torch.Tensor, set_ids: torch.Tensor, set_weights: torch.Tensor, top_k: int):
    """The reductions as the probe computed them before the kernel: full float32 log-prob rows."""
    probs = logp.exp()
    entropy = -(logp.exp() * logp).nan_to_num(nan=0.0, neginf=0.0).sum(-1) / math.log(2)
    n, s, k = set_ids.shape
    masses = (probs.gather(1, set_ids.reshape(n, s * k)).reshape(n, s, k) * set_weights).sum(-1)
    top = logp.topk(top_k, dim=-1)
    return entropy, masses, top.indices, top.values


@pytest.mark.parametrize("slice_size", [1, 7, 100, None])
def test_one_pass_over_slices_equals_the_full_log_softmax(slice_size):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 1000, generator=gen) * 4
    logits[2] *= 10  # a peaked row: most mass on few tokens
    set_ids = torch.randint(0, 1000, (6, 3, 5), generator=gen)
    set_weights = (torch.rand(6, 3, 5, generator=gen) > 0.3).float()
    before = logits.clone()
    red = reduce_logits(logits, set_ids, set_weights, top_k=4, slice_size=slice_size)
    assert torch.equal(logits, before)  # logits given by the caller are read, never shifted in place
    logp = torch.log_softmax(logits, dim=-1)
    entropy, masses, top_ids, top_logp = _old_stats(logp, set_ids, set_weights, 4)
    torch.testing.assert_close(red.lse, torch.logsumexp(logits, -1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(red.entropy_bits, entropy, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(red.masses, masses, atol=1e-6, rtol=1e-5)
    assert torch.equal(red.top_ids, top_ids)
    torch.testing.assert_close(red.top_log_probs, top_logp, atol=1e-5, rtol=1e-6)
    # against float64: the one pass is as accurate as the full float32 rows
    ref = torch.log_softmax(logits.double(), -1)
    ref_entropy = -(ref.exp() * ref).sum(-1) / math.log(2)
    assert (red.entropy_bits.double() - ref_entropy).abs().max() <= (entropy.double() - ref_entropy).abs().max() + 2e-6


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_project_into_a_buffer_equals_the_allocating_product(softcap):
    gen = torch.Generator().manual_seed(1)
    normed, weight, bias = torch.randn(5, 8, generator=gen), torch.randn(11, 8, generator=gen), torch.randn(11)
    for b in (None, bias):
        buffer = torch.full((5, 11), float("nan"))
        out = project(normed, weight, b, softcap, out=buffer)
        assert out.data_ptr() == buffer.data_ptr()  # written in place, no new block
        torch.testing.assert_close(out, cap_logits(torch.nn.functional.linear(normed, weight, b), softcap),
                                   atol=1e-6, rtol=1e-6)


def test_zero_probability_entries_and_no_sets():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    red = reduce_logits(logp.clamp(min=-1e30), top_k=2)
    assert red.masses.shape == (1, 0) and torch.isfinite(red.entropy_bits).all()
    assert abs(float(red.entropy_bits[0]) - 1.0) < 1e-6


def _old_measure(lm, items, token_sets, top_k=10, show_tokens=3):
    """The probe's lens rows with the reductions computed as before the kernel (full log-prob rows)."""
    names = lm.hook_names()
    resid = lm.capture(lm.tokenize([it.prompt for it in items]), names, positions="last").stack(names)
    ids, weights = item_set_tensors(token_sets, items)
    with torch.no_grad():  # all rows in one product, as the kernel does (the old path's results moved by
        logp = lm.log_probs(resid.reshape(-1, resid.shape[-1]))  # ~1e-5 in log-prob with its row chunking)
    n = len(items)
    stats, tops = [], []
    for layer in range(lm.n_layers):
        entropy, masses, top_ids, _ = _old_stats(logp[layer * n:(layer + 1) * n], ids, weights, top_k)
        stats.append(torch.cat([masses, entropy[:, None]], dim=1))
        tops.append(top_ids)
    rows = batch_rows(lm.tokenizer, items, torch.stack(stats), torch.stack(tops), token_sets, show_tokens)
    return pd.DataFrame(rows)


def _compare_with_old_path(lm, n_items, atol=1e-6, entropy_atol=1e-6):
    items = translation_items(load_words(languages=["en", "fr", "de", "zh"]), "fr", "zh")[:n_items]
    items += translation_items(load_words(languages=["en", "fr", "de", "zh"]), "de", "fr")[:n_items]
    ts = TokenSets(lm.tokenizer)
    new = measure(lm, items, ts, batch_size=len(items), progress=False)
    old = _old_measure(lm, items, ts)
    key = ["item_id", "layer"]
    new = new.sort_values(key, ignore_index=True)
    old = old.sort_values(key, ignore_index=True)
    assert len(new) == len(old) == len(items) * lm.n_layers
    assert (new["top_tokens"] == old["top_tokens"]).all()
    probs = [c for c in NUMERIC if c != "entropy_bits"]
    diff = float((new[probs] - old[probs]).abs().max().max())
    pd.testing.assert_frame_equal(new[key + probs], old[key + probs], atol=atol, rtol=0)
    # entropy: up to ~18 bits in float32: equal to atol + 1e-6 relative (its float32 digits)
    excess = (new["entropy_bits"] - old["entropy_bits"]).abs() - 1e-6 * old["entropy_bits"].abs()
    assert float(excess.max()) <= entropy_atol
    return diff, float((new["entropy_bits"] - old["entropy_bits"]).abs().max())


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_lens_reduce_equals_the_old_path_in_small_slices_and_row_groups(tiny_models, family, monkeypatch):
    lm = tiny_models[family]  # gemma2: with the final logit soft-cap
    monkeypatch.setattr(decoding, "MIN_SLICE", 37)
    monkeypatch.setattr(decoding, "MAX_SLICE", 37)
    monkeypatch.setattr(lm, "lens_chunk", 5)  # groups of 5 rows, each reading the head in slices of 37
    _compare_with_old_path(lm, 3)
    monkeypatch.setattr(lm, "lens_chunk", None)
    _compare_with_old_path(lm, 3)


@pytest.mark.embedded
def test_lens_outputs_unchanged_on_the_embedded_model(embedded_model):
    """On a 262k vocabulary the old path's own float32 error (``z - lse`` then ``exp``) reaches 5e-6
    in a probability and 3e-4 bits in entropy; the kernel is closer to the float64 reductions of
    the same logits than it (measured: 1e-6 and 2e-6)."""
    lm = embedded_model
    diff, rel = _compare_with_old_path(lm, 2, atol=1e-5, entropy_atol=1e-3)
    items = translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[:4]
    names = lm.hook_names()
    with torch.no_grad():
        resid = lm.capture(lm.tokenize([it.prompt for it in items]), names, positions="last").stack(names)
        rows = resid.reshape(-1, resid.shape[-1])
        ids, weights = (t.repeat(lm.n_layers, 1, 1) for t in item_set_tensors(TokenSets(lm.tokenizer), items))
        red = lm.lens_reduce(rows, ids, weights, 10)
        logits = lm.decode(rows)
    old_entropy, old_masses, _, _ = _old_stats(torch.log_softmax(logits, -1), ids, weights, 10)
    exact_logp = torch.log_softmax(logits.double(), -1)  # float64 reductions of the same float32 logits
    exact = exact_logp.exp()
    exact_entropy = -(exact * exact_logp).sum(-1) / math.log(2)
    exact = (exact.gather(1, ids.reshape(len(rows), -1)).reshape(ids.shape) * weights.double()).sum(-1)
    kernel_err = float((red.masses.double() - exact).abs().max())
    old_err = float((old_masses.double() - exact).abs().max())
    kernel_h = float((red.entropy_bits.double() - exact_entropy).abs().max())
    old_h = float((old_entropy.double() - exact_entropy).abs().max())
    print(f"embedded model: kernel vs old full-row path, max |diff| of probabilities {diff:.2e}, of entropy "
          f"(bits) {rel:.2e}; error against float64: probabilities kernel {kernel_err:.2e}, old {old_err:.2e}; "
          f"entropy kernel {kernel_h:.2e}, old {old_h:.2e}")
    assert kernel_err <= old_err + 1e-7 and kernel_err < 5e-6
    assert kernel_h <= old_h and kernel_h < 1e-5
