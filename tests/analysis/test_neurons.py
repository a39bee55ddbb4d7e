"""dftlens neurons / steer: LAPE statistics and selection against an independent computation,
deactivation and steering edits against plain Hugging Face hooks, the CLI and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dftlens import load_model
from dftlens.analysis.lape import activation_stats, select_neurons
from dftlens.analysis.neuron_config import NeuronsConfig, SteerConfig
from dftlens.analysis.neurons import load_split, sentence_nll, zero_edits
from dftlens.analysis.sentence_reps import pooling_weights
from dftlens.analysis.steering import steering_edit
from dftlens.models import hook_name
from dftlens.models.mlp_layout import act_module, down_module
from dftlens_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
LANGS = ["en", "zh", "fr"]


@pytest.fixture(scope="module")
def texts():
    stats, held = load_split(NeuronsConfig(langs=LANGS, heldout=3))
    return {k: v[:6] for k, v in stats.items()}, held


def _independent_counts(lm, sentences):
    """Active counts from the engine's captures: resid_mid through the HF MLP's own gate (gated), or
    blocks.{l}.mlp.hook_post itself (act(fc_in)), one sentence at a time, no padding."""
    L = lm.n_layers
    N = down_module(lm.hf_model, 0).weight.shape[1] if lm.config.model_type != "gpt2" else \
        down_module(lm.hf_model, 0).weight.shape[0]
    active, post_sum, tokens = np.zeros((L, N, len(sentences))), np.zeros((L, N, len(sentences))), np.zeros(len(sentences))
    names = lm.hook_names("resid_mid") + [hook_name(l, "mlp_post") for l in range(L)]
    for k, lang in enumerate(sentences):
        for text in sentences[lang]:
            batch = lm.tokenize([text])
            cap = lm.capture(batch, names)
            keep = pooling_weights(batch["input_ids"], batch["attention_mask"], lm.tokenizer.bos_token_id)[0].bool()
            tokens[k] += int(keep.sum())
            for layer in range(L):
                post = cap[hook_name(layer, "mlp_post")][0][keep]
                if lm.config.model_type == "llama":
                    block = lm.hf_model.model.layers[layer]
                    with torch.no_grad():
                        gate = block.mlp.gate_proj(block.post_attention_layernorm(cap[hook_name(layer, "resid_mid")]))
                    on = torch.nn.functional.silu(gate)[0][keep] > 0
                else:
                    on = post > 0
                active[layer, :, k] += on.sum(0).numpy()
                post_sum[layer, :, k] += (post * on).sum(0).double().numpy()
    return active, post_sum, tokens


def _identify_py(probs, top_rate, filter_rate, bar_ratio):
    """Tang et al.'s identify.py, in torch as they wrote it: (sorted (layer, neuron) rows, specific [C, K])."""
    p = torch.from_numpy(probs)
    normed = p / p.sum(dim=-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    entropy = -torch.sum(normed * torch.where(normed > 0, normed.log(), 0), dim=-1)
    flat = p.flatten()
    top_prob_value = flat.kthvalue(round(len(flat) * filter_rate)).values.item()
    entropy[(p > top_prob_value).sum(dim=-1) == 0] = torch.inf
    _, index = entropy.flatten().topk(round(entropy.numel() * top_rate), largest=False)
    rows, cols = index // entropy.size(1), index % entropy.size(1)
    bar = flat.kthvalue(round(len(flat) * bar_ratio)).values.item()
    specific = (p[rows, cols] > bar).numpy()
    order = np.lexsort((cols.numpy(), rows.numpy()))
    return set(zip(rows.numpy().tolist(), cols.numpy().tolist())), specific[order], entropy.numpy()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lape_statistics_match_an_independent_computation(tiny_models, family_dir, texts, family):
    lm = tiny_models[family] if family in tiny_models else load_model(str(family_dir(family)))
    stats = activation_stats(lm, texts[0], batch_size=4, progress=False)
    active, post_sum, tokens = _independent_counts(lm, texts[0])
    np.testing.assert_array_equal(stats.tokens, tokens)
    np.testing.assert_array_equal(stats.active, active)
    np.testing.assert_allclose(stats.post_sum, post_sum, rtol=1e-4, atol=1e-3)
    assert 0 < stats.probs.mean() < 1
    sel = select_neurons(stats.probs, top_rate=0.05)
    rows, specific, entropy = _identify_py(stats.probs, 0.05, 0.95, 0.95)
    assert set(zip(sel.layer.tolist(), sel.neuron.tolist())) == rows
    np.testing.assert_array_equal(sel.specific, specific)
    finite = np.isfinite(entropy)
    np.testing.assert_allclose(sel.entropy[finite], entropy[finite], rtol=1e-6)
    assert sel.specific.any(), "some neuron should be specific to some language at top_rate 0.05"


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_deactivation_matches_a_plain_hf_hook(tiny_models, texts, backend):
    lm = tiny_models["llama"] if backend == "transformer_lens" else tiny_models["llama"].with_backend(backend)
    sentences = texts[1]["fr"]
    neurons = {0: np.array([1, 5, 9]), 2: np.array([0, 127])}
    nll, count = sentence_nll(lm, sentences, zero_edits(neurons), batch_size=2)

    def zero(idx):
        return lambda m, a: (a[0].index_fill(-1, torch.as_tensor(idx), 0.0),)

    handles = [down_module(lm.hf_model, l).register_forward_pre_hook(zero(idx)) for l, idx in neurons.items()]
    try:
        for i, text in enumerate(sentences):
            batch = lm.tokenize([text])
            with torch.no_grad():
                logp = lm.hf_model(**lm.model_inputs(batch)).logits.float().log_softmax(-1)[0, :-1]
            ref = -logp.gather(-1, batch["input_ids"][0, 1:, None]).sum()
            assert count[i] == batch["input_ids"].shape[1] - 1
            assert nll[i] == pytest.approx(float(ref), rel=1e-4)
    finally:
        for h in handles:
            h.remove()
    clean, _ = sentence_nll(lm, sentences, [], batch_size=2)
    assert not np.allclose(clean, nll)


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_steering_edits_match_plain_hf_hooks(tiny_models, backend):
    lm = tiny_models["llama"] if backend == "transformer_lens" else tiny_models["llama"].with_backend(backend)
    batch = lm.tokenize(['Français: "eau" - 中文: "', "the cat"], padding_side="left")
    layer, vec = 1, torch.randn(lm.d_model)
    idx, values = torch.tensor([3, 4, 40]), torch.tensor([0.5, -1.0, 2.0])
    last = lm.hook_name(lm.n_layers - 1)
    for method, module, hook in [
        ("vector", lm.hf_model.model.layers[layer], lambda m, a, o: (o[0] + 2.0 * vec,) + tuple(o[1:])
         if isinstance(o, tuple) else o + 2.0 * vec),
        ("neurons", down_module(lm.hf_model, layer),
         lambda m, a: (a[0].index_copy(-1, idx, (2.0 * values).expand(*a[0].shape[:-1], 3).contiguous()),)),
    ]:
        edit = steering_edit(method, layer, 2.0, {layer: vec}, {layer: (idx, values)})
        ours = lm.log_probs(lm.capture(batch, [last], positions="last", edits=[edit])[last])
        handle = (module.register_forward_hook(hook) if method == "vector" else module.register_forward_pre_hook(hook))
        try:
            with torch.no_grad():
                ref = lm.hf_model(**lm.model_inputs(batch)).logits[:, -1].float().log_softmax(-1)
        finally:
            handle.remove()
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_active_module_is_the_gate_activation(tiny_models):
    lm = tiny_models["llama"]
    assert act_module(lm.hf_model, 0) is lm.hf_model.model.layers[0].mlp.act_fn


def test_neurons_and_steer_cli(tiny_dirs, tmp_path):
    model = str(tiny_dirs["llama"])
    out = tmp_path / "neurons"
    args = ["neurons", "--model", model, "--langs", "en,zh,fr", "--heldout", "3", "--top-rate", "0.05",
            "--batch-size", "8", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "neurons.csv", keep_default_na=False)
    assert list(table.columns) == ["layer", "neuron", "languages", "entropy", "p_en", "p_zh", "p_fr"]
    assert len(table) == round(0.05 * 4 * 128) and (table["languages"] != "").any()
    assert set(";".join(table["languages"]).replace(";", " ").split()) <= {"en", "zh", "fr"}
    deact = pd.read_csv(out / "deactivation.csv")
    assert set(deact["control"]) == {"none", "language", "random"} and (deact["ppl_ratio_lo"] <= deact["ppl_ratio"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "language neurons" and summary["n_specific"] > 0
    assert (out / "report.html").stat().st_size > 1000 and (out / "run_config.yaml").is_file()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output

    for method in ("vector", "neurons"):
        steer_out = tmp_path / f"steer-{method}"
        result = runner.invoke(app, ["steer", "--model", model, "--from", "en:zh", "--to", "fr", "--method", method,
                                     "--layers", "1-2", "--strengths", "1,4", "--n-prompts", "5",
                                     "--neurons", str(out), "--out", str(steer_out)])
        assert result.exit_code == 0, result.output
        steer = pd.read_csv(steer_out / "steering.csv")
        assert {"switched", "switched_lo", "switched_hi", "p_new", "p_old", "kept", "p_concept"} <= set(steer.columns)
        assert steer["layer"].min() == -1 and set(steer["layer"]) <= {-1, 1, 2}
        assert steer[["switched", "p_new", "p_old"]].apply(lambda c: c.between(0, 1)).all().all()

    # Both runs join layers.json's evidence as kinds of their own.
    probe_out = tmp_path / "probe"
    result = runner.invoke(app, ["probe", "--model", model, "--no-probes", "--tasks", "translation", "--pairs", "fr:zh",
                                 "--max-items", "3", "--batch-size", "3", "--neurons", str(out),
                                 "--steering", str(tmp_path / "steer-vector"), "--out", str(probe_out)])
    assert result.exit_code == 0, result.output
    layers = json.loads((probe_out / "layers.json").read_text())
    kinds = {r["kind"] for r in layers["evidence"]["readings"]}
    assert {"neurons", "steering"} <= kinds, kinds


def _one_error(args, phrase):
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_bad_input_is_one_error_line(tiny_dirs, tmp_path):
    model = str(tiny_dirs["llama"])
    _one_error(["neurons", "--model", model, "--langs", "en,xx", "--out", str(tmp_path / "a")], "'xx'")
    _one_error(["neurons", "--model", model, "--langs", "en", "--out", str(tmp_path / "b")], "at least two")
    _one_error(["neurons", "--model", model, "--heldout", "500", "--out", str(tmp_path / "c")], "--heldout")
    _one_error(["steer", "--model", model, "--layers", "0,99", "--out", str(tmp_path / "d")], "out of range")
    _one_error(["steer", "--model", model, "--from", "fr:zh", "--to", "zh", "--out", str(tmp_path / "e")],
               "already")
    _one_error(["steer", "--model", model, "--to", "xx", "--out", str(tmp_path / "f")], "'xx'")
    _one_error(["steer", "--model", model, "--method", "neurons", "--neurons", str(tmp_path),
                "--out", str(tmp_path / "g")], "neurons.csv")
    for name in "abcdefg":
        assert not (tmp_path / name).exists()
    with pytest.raises(Exception, match="out of range"):
        SteerConfig(layers=[7]).check(4)


def test_cluster_edges_of_bottom_and_top_neurons():
    from dftlens.analysis.neurons import cluster_edges

    assert cluster_edges(np.array([5, 8, 2, 0, 0, 0, 1, 6, 9, 3])) == (1, 7)
    assert cluster_edges(np.array([0, 0, 0, 4])) == (None, 3)


def test_neuron_and_steering_evidence_kinds():
    from dftlens.analysis.evidence_kinds import KINDS, KindContext

    ctx = KindContext(18, pd.DataFrame(), None, {}, {}, None, {
        "neurons": {"kind": "language neurons", "bottom_cluster_end": 7, "top_cluster_start": 16},
        "steering": {"kind": "language steering", "best_layers": [8, 2, 16],
                     "best": {"layer": 8, "strength": 2.0, "switched": 0.21}}})
    (neurons,) = KINDS["neurons"].read(ctx)
    assert (neurons.signal, neurons.layer, neurons.interval) == ("window", 8, (8, 15))
    (steer,) = KINDS["steering"].read(ctx)
    assert (steer.signal, steer.layer, steer.interval) == ("switch", 8, (2, 16))
    empty = KindContext(18, pd.DataFrame(), None, {}, {}, None, {})
    assert KINDS["neurons"].read(empty) == [] and KINDS["steering"].read(empty) == []


def test_probe_with_a_missing_neurons_run_is_one_error(tiny_dirs, tmp_path):
    _one_error(["probe", "--model", str(tiny_dirs["llama"]), "--no-probes", "--pairs", "fr:zh", "--neurons",
                str(tmp_path), "--out", str(tmp_path / "p")], "dftlens neurons")
    assert not (tmp_path / "p").exists()
