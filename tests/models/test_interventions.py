"""Interventions on the one model interface, checked against plain Hugging Face forward hooks."""

from __future__ import annotations

import pytest
import torch

from dftlens.errors import LayerError
from dftlens.models import Edit, hook_name

from conftest import FAMILIES

BACKENDS = ("transformer_lens", "nnsight")
TEXTS = ['Français: "eau" - English: "water"', "the cat", "水 - 花"]


@pytest.fixture(scope="module")
def models(tiny_models):
    return {f: {"transformer_lens": m, "nnsight": m.with_backend("nnsight")} for f, m in tiny_models.items()}


def _site_module(lm, layer, site):
    sub, which = lm.arch.sites[site]
    module = lm.hf_model.model.layers[layer]
    return (module.get_submodule(sub) if sub else module), which


def _hf_run(lm, batch, writes):
    """Final logits [batch, seq, vocab] of a plain HF forward with ``writes`` done by torch hooks.

    ``writes``: list of (layer, site, fn) with fn(hidden [batch, seq, d]) -> new hidden.
    """
    handles = []
    for layer, site, fn in writes:
        module, which = _site_module(lm, layer, site)
        if which == "input":
            def pre(mod, args, kwargs, fn=fn):
                if args:
                    return (fn(args[0]), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(mod, args, out, fn=fn):
                return (fn(out[0]), *out[1:]) if isinstance(out, tuple) else fn(out)
            handles.append(module.register_forward_hook(post))
    try:
        pos_ids = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
        return lm.hf_model(**batch, position_ids=pos_ids).logits
    finally:
        for h in handles:
            h.remove()


def _last(batch):
    mask = batch["attention_mask"]
    return (mask * torch.arange(1, mask.shape[1] + 1)).argmax(1)


def _put(rows, pos, values, add=False):
    """fn(hidden) writing values [n, d] at (rows[i], pos[i]) -- the reference, by plain indexing."""
    def fn(h):
        h = h.clone()
        for i, (r, p) in enumerate(zip(rows, pos)):
            h[r, p] = h[r, p] + values[i] if add else values[i]
        return h
    return fn


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", ["left", "right"])
def test_replace_and_add_match_hf_hooks(models, family, backend, padding):
    lm = models[family][backend]
    batch = lm.tokenize(TEXTS, padding_side=padding)
    last = _last(batch)
    torch.manual_seed(1)
    d = lm.d_model
    v1 = torch.randn(2, d)  # rows 0 and 2, last token, block 1 resid_post
    v2 = torch.randn(d)  # added at block 2 resid_pre, rows 1, position "second to last"
    v3 = torch.randn(3, d)  # attn_out of block 0, every row at its last token
    edits = [
        Edit(hook_name(1), v1, positions="last", rows=torch.tensor([0, 2])),
        Edit(hook_name(2, "resid_pre"), v2, positions=torch.tensor([-2]), rows=torch.tensor([1]), mode="add"),
        Edit(hook_name(0, "attn_out"), v3, positions="last"),
        Edit(hook_name(0, "attn_out"), lambda a: a * 0.5, positions="last", rows=torch.tensor([0])),
    ]
    writes = [
        (0, "attn_out", _put([0, 1, 2], last.tolist(), v3)),
        (0, "attn_out", _put([0], [last[0]], [0.5 * v3[0]])),
        (1, "resid_post", _put([0, 2], [last[0], last[2]], v1)),
        (2, "resid_pre", _put([1], [last[1] - 1], [v2], add=True)),
    ]
    # Two edits on one hook compose in order; the HF reference composes its two hooks the same way.
    with torch.no_grad():
        ref = _hf_run(lm, batch, writes)[torch.arange(len(TEXTS)), last]
        plain = _hf_run(lm, batch, [])[torch.arange(len(TEXTS)), last]
        cap = lm.intervene(batch, edits, lens=True)
    out = cap.logits[hook_name(lm.n_layers - 1)]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert (out - plain).abs().max() > 1e-2  # the edits changed the output


@pytest.mark.parametrize("backend", BACKENDS)
def test_captures_see_the_edit_and_all_positions(models, backend):
    lm = models["gemma3"][backend]
    batch = lm.tokenize(TEXTS, padding_side="right")
    zero = torch.zeros(lm.d_model)
    name, later = hook_name(1, "mlp_out"), hook_name(2)
    with torch.no_grad():
        cap = lm.intervene(batch, [Edit(name, zero, positions=None)], names=[name, later], positions=None)
        ref = _hf_run(lm, batch, [(1, "mlp_out", lambda h: torch.zeros_like(h))])
        plain = lm.capture(batch, [later])[later]
    assert cap[name].abs().max() == 0
    mask = batch["attention_mask"].bool()
    # block 2's output feeds the rest: compare the final logits instead of HF hidden states
    final = lm.intervene(batch, [Edit(name, zero, positions=None)], positions=None, lens=True)
    torch.testing.assert_close(final.logits[hook_name(lm.n_layers - 1)][mask], ref[mask], atol=1e-4, rtol=1e-4)
    assert (cap[later] - plain)[mask].abs().max() > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_reach_the_edit_value_and_the_model(models, backend):
    lm = models["llama"][backend]
    batch = lm.tokenize(TEXTS)
    last = _last(batch)
    torch.manual_seed(2)
    steer = torch.randn(lm.d_model, requires_grad=True)
    weight = lm.hf_model.model.layers[0].mlp.down_proj.weight

    cap = lm.intervene(batch, [Edit(hook_name(1, "resid_mid"), steer, mode="add")], grad=True, lens=True)
    loss = cap.logits[hook_name(lm.n_layers - 1)].logsumexp(-1).sum()
    g_steer, g_weight = torch.autograd.grad(loss, [steer, weight])

    ref = _hf_run(lm, batch, [(1, "resid_mid", _put([0, 1, 2], last.tolist(), [steer] * 3, add=True))])
    ref_loss = ref[torch.arange(len(TEXTS)), last].logsumexp(-1).sum()
    r_steer, r_weight = torch.autograd.grad(ref_loss, [steer, weight])
    torch.testing.assert_close(loss, ref_loss, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g_steer, r_steer, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(g_weight, r_weight, atol=1e-4, rtol=1e-3)
    assert g_steer.abs().sum() > 0

    with torch.no_grad():
        cap = lm.intervene(batch, [Edit(hook_name(1), steer)], lens=True)
    assert not cap.logits[hook_name(lm.n_layers - 1)].requires_grad


def test_bad_edits_are_clear_errors(models):
    lm = models["llama"]["transformer_lens"]
    batch = lm.tokenize(TEXTS)
    with pytest.raises(LayerError, match="out of range"):
        lm.intervene(batch, [Edit("blocks.99.hook_resid_post", torch.zeros(lm.d_model))])
    with pytest.raises(Exception, match="outside"):
        lm.intervene(batch, [Edit(hook_name(0), torch.zeros(lm.d_model), positions=torch.tensor([0, 0, 999]))])
