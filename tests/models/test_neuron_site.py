"""The neuron site blocks.{l}.mlp.hook_post on every family and both engines, against plain Hugging Face."""

from __future__ import annotations

import pytest
import torch

from dftlens import load_model
from dftlens.models import hook_name, parse_hook_name
from dftlens.models.interventions import Edit
from dftlens.models.mlp_layout import act_module, d_mlp, down_module, mlp_layout, neuron_parameters

from conftest import ALL_FAMILIES

BACKENDS = ("transformer_lens", "nnsight")
TEXTS = ['Français: "eau" - English: "water"', "the cat", "水"]
POST_NORM = {"gemma2", "gemma3", "olmo2"}  # mlp_out is the post-feed-forward norm of the projection


@pytest.fixture(scope="module")
def models(tiny_models, family_dir):
    out = {}

    def get(family):
        if family not in out:
            lm = tiny_models[family] if family in tiny_models else load_model(str(family_dir(family)))
            out[family] = {"transformer_lens": lm, "nnsight": lm.with_backend("nnsight")}
        return out[family]

    return get


def _hf_down_inputs(lm, batch, layer):
    """The input of the down projection in a plain HF forward (a forward pre-hook), and the logits."""
    got = {}
    handle = down_module(lm.hf_model, layer).register_forward_pre_hook(lambda m, a: got.update(x=a[0].clone()))
    try:
        with torch.no_grad():
            logits = lm.hf_model(**lm.model_inputs(batch)).logits
    finally:
        handle.remove()
    return got["x"], logits


def test_neuron_hook_name_round_trips():
    assert hook_name(3, "mlp_post") == "blocks.3.mlp.hook_post"
    assert parse_hook_name("blocks.3.mlp.hook_post") == (3, "mlp_post")


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_neuron_site_matches_hf_and_projects_to_mlp_out(models, family, backend):
    lm = models(family)[backend]
    batch = lm.tokenize(TEXTS, padding_side="right")
    mask = batch["attention_mask"].bool()
    layer = 1
    post, out = hook_name(layer, "mlp_post"), hook_name(layer, "mlp_out")
    cap = lm.capture(batch, [post, out])
    assert cap[post].shape[-1] == d_mlp(lm.hf_model)
    hf_post, _ = _hf_down_inputs(lm, batch, layer)
    torch.testing.assert_close(cap[post][mask], hf_post[mask], atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        projected = down_module(lm.hf_model, layer)(cap[post])
        if family in POST_NORM:
            projected = lm.hf_model.model.layers[layer].post_feedforward_layernorm(projected)
    torch.testing.assert_close(projected[mask], cap[out][mask], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_zeroing_neurons_matches_a_plain_hf_hook(models, family, backend):
    lm = models(family)[backend]
    batch = lm.tokenize(TEXTS, padding_side="left")
    layer, neurons = 0, torch.tensor([0, 3, 7, 20])
    edit = Edit(hook_name(layer, "mlp_post"), lambda cur: cur.index_fill(-1, neurons, 0.0), positions=None)
    cap = lm.intervene(batch, [edit], lens=True)
    ours = cap.logits[hook_name(lm.n_layers - 1)]

    def zero(module, args):
        return (args[0].index_fill(-1, neurons, 0.0),) + args[1:]

    handle = down_module(lm.hf_model, layer).register_forward_pre_hook(zero)
    try:
        with torch.no_grad():
            ref = lm.hf_model(**lm.model_inputs(batch)).logits[:, -1]
    finally:
        handle.remove()
    torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=1e-4)
    _, clean = _hf_down_inputs(lm, batch, layer)
    assert not torch.allclose(ours, clean[:, -1].float(), atol=1e-4)  # the edit changed the output


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_active_module_and_owned_parameters(models, family):
    lm = models(family)["transformer_lens"]
    layout = mlp_layout(lm.config)
    batch = lm.tokenize(TEXTS)
    layer, width = 1, d_mlp(lm.hf_model)
    got = {}
    handle = act_module(lm.hf_model, layer).register_forward_hook(lambda m, a, o: got.update(act=o.clone()))
    hf_post, _ = _hf_down_inputs(lm, batch, layer)
    with torch.no_grad():
        lm.hf_model(**lm.model_inputs(batch))
    handle.remove()
    assert got["act"].shape[-1] == width
    if not layout.gated:  # act(fc_in) is the hidden unit itself
        torch.testing.assert_close(got["act"], hf_post)
    # Scaling the slices neuron 5 owns by 0 in its input projections zeroes exactly that unit.
    params = neuron_parameters(lm.hf_model, layer)
    assert any(p.name.endswith("weight") for p in params)
    saved = [(p, p.param.detach().clone()) for p in params]
    try:
        with torch.no_grad():
            for p in params[:-1]:  # the input projections (the last entry is the output projection)
                p.param.index_fill_(p.dim, p.index(torch.tensor([5])), 0.0)
            after, _ = _hf_down_inputs(lm, batch, layer)
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.param.copy_(value)
    assert torch.all(after[..., 5] == 0) and not torch.all(hf_post[..., 5] == 0)
    others = torch.arange(width) != 5
    torch.testing.assert_close(after[..., others], hf_post[..., others])
    down = params[-1]
    assert down.param.shape[down.dim] == width
