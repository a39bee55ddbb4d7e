"""Each DFT loss against an independent computation on a plain Hugging Face model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from dft_data import instruction_rows, write_jsonl

from dftlens import load_model
from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import collate
from dftlens.dft.chunked_ce import linear_cross_entropy
from dftlens.dft.losses import DFTLoss
from dftlens.layers import LayerChoice

FAMILIES = ("llama", "gemma2", "gemma3")
LC, ET = 1, 2  # tiny models have 4 blocks


def layers(lm) -> LayerChoice:
    """The LC/ET layers the loss tests supervise, as the one object the loss reads."""
    return LayerChoice("tiny", lm.n_layers, LC, ET)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("dft") / "pairs.jsonl", instruction_rows(4))


def encoded(lm, data_file, lang="zh"):
    data = load_instructions(data_file, lang)
    return encode_pairs(data, PromptFormat(lm.tokenizer), max_length=256)


def batch_for(lm, pairs, lc, et):
    tok = lm.tokenizer
    return collate(pairs, lc, et, tok.pad_token_id, tok.bos_token_id)


def reference_model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def right_pad(seqs, pad):
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask


def hidden_states(model, seqs, pad):
    """HF hidden states (entry k = output of block k-1) and the last block's pre-norm output."""
    ids, mask = right_pad(seqs, pad)
    seen = {}
    handle = model.model.norm.register_forward_hook(lambda m, args, out: seen.setdefault("pre", args[0]))
    try:
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    finally:
        handle.remove()
    states = list(out.hidden_states)
    states[-1] = seen["pre"]  # HF normalises the last entry; use the raw residual like every other layer
    return states, mask


def lens_nll(model, states, seqs, prefixes):
    """Mean NLL of each row's continuation from the logit lens (norm, head, soft-cap) on ``states``."""
    logits = model.lm_head(model.model.norm(states))
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    labels = torch.full(logits.shape[:2], -100)
    for b, (seq, p) in enumerate(zip(seqs, prefixes)):
        labels[b, : len(seq) - 1] = torch.tensor(seq[1:])
        labels[b, : p - 1] = -100
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def pooled(states, seqs, bos):
    rows = []
    for b, seq in enumerate(seqs):
        first = 1 if seq[0] == bos else 0
        rows.append(states[b, first : len(seq)].mean(0))
    return torch.stack(rows)


# -- the chunked cross-entropy ------------------------------------------------
@pytest.mark.parametrize("softcap,bias,frozen", [(None, False, False), (2.0, True, False), (3.0, False, True)])
def test_chunked_cross_entropy_matches_autograd(softcap, bias, frozen):
    torch.manual_seed(0)
    h = torch.randn(13, 8, requires_grad=True)
    w = torch.randn(50, 8, requires_grad=not frozen)
    b = torch.randn(50, requires_grad=True) if bias else None
    t = torch.randint(0, 50, (13,))
    logits = h @ w.T + (b if b is not None else 0)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    ref = F.cross_entropy(logits, t, reduction="sum")
    ref_grads = torch.autograd.grad(ref, [x for x in (h, w, b) if x is not None and x.requires_grad])
    got = linear_cross_entropy(h, w, t, b, softcap, chunk=4)
    grads = torch.autograd.grad(3 * got, [x for x in (h, w, b) if x is not None and x.requires_grad])
    torch.testing.assert_close(got, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, 3 * r)


def test_chunked_cross_entropy_without_grad():
    h, w, t = torch.randn(5, 4, requires_grad=True), torch.randn(7, 4), torch.randint(0, 7, (5,))
    with torch.no_grad():
        got = linear_cross_entropy(h, w, t, chunk=2)
    torch.testing.assert_close(got, F.cross_entropy(h @ w.T, t, reduction="sum"))
    assert not got.requires_grad


# -- each loss against a plain HF forward -------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_tft_equals_masked_causal_lm_loss(family, tiny_models, tiny_dirs, data_file):
    lm = tiny_models[family]
    pairs = encoded(lm, data_file)
    parts = DFTLoss(lm).components(batch_for(lm, pairs, "off", "off"))
    model = reference_model(tiny_dirs[family])
    seqs = [p.main.ids for p in pairs]
    ids, mask = right_pad(seqs, lm.tokenizer.pad_token_id)
    labels = torch.tensor([[-100] * p.main.prefix + p.main.continuation + [-100] * (ids.shape[1] - len(s))
                           for p, s in zip(pairs, seqs)])
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(parts["tft"].detach(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["loss"].detach(), ref, rtol=1e-5, atol=1e-5)
    assert set(parts) == {"tft", "loss"}


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_losses_match_direct_computation(family, tiny_models, tiny_dirs, data_file):
    lm = tiny_models[family]
    pairs = encoded(lm, data_file)
    loss = DFTLoss(lm, layers(lm), lc_signal="logits", et_signal="logits",
                   w_lc=0.5, w_et=2.0)
    parts = loss.components(batch_for(lm, pairs, "logits", "logits"))
    model = reference_model(tiny_dirs[family])
    pad = lm.tokenizer.pad_token_id
    with torch.no_grad():
        lc_seqs = [p.lc.ids for p in pairs]
        states, _ = hidden_states(model, lc_seqs, pad)
        lc = lens_nll(model, states[LC + 1], lc_seqs, [p.lc.prefix for p in pairs])
        et_seqs = [p.et.ids for p in pairs]
        states, _ = hidden_states(model, et_seqs, pad)
        et = lens_nll(model, states[ET + 1], et_seqs, [p.et.prefix for p in pairs])
    torch.testing.assert_close(parts["lc"].detach(), lc, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["et"].detach(), et, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["loss"].detach(), parts["tft"].detach() + 0.5 * lc + 2.0 * et)


@pytest.mark.parametrize("family", FAMILIES)
def test_feature_losses_match_direct_computation(family, tiny_models, tiny_dirs, data_file):
    lm = tiny_models[family]
    pairs = encoded(lm, data_file)
    loss = DFTLoss(lm, layers(lm), lc_signal="feature", et_signal="feature")
    parts = loss.components(batch_for(lm, pairs, "feature", "feature"))
    model = reference_model(tiny_dirs[family])
    pad, bos = lm.tokenizer.pad_token_id, lm.tokenizer.bos_token_id
    with torch.no_grad():  # the target query alone: causal attention makes it the same as in the main pass
        tgt_seqs, en_seqs = [p.main.ids[: p.main.prefix] for p in pairs], [p.english.ids for p in pairs]
        tgt, _ = hidden_states(model, tgt_seqs, pad)
        en, _ = hidden_states(model, en_seqs, pad)
        lc = 1 - F.cosine_similarity(pooled(en[LC + 1], en_seqs, bos), pooled(tgt[LC + 1], tgt_seqs, bos))
        et = 1 - F.cosine_similarity(pooled(en[-1], en_seqs, bos), pooled(tgt[ET + 1], tgt_seqs, bos))
    torch.testing.assert_close(parts["lc"].detach(), lc.mean(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts["et"].detach(), et.mean(), rtol=1e-5, atol=1e-5)
    assert all(0 < float(parts[k].detach()) < 2 for k in ("lc", "et"))


def test_english_side_detached_by_default(tiny_models, data_file):
    lm = tiny_models["gemma3"]
    batch = batch_for(lm, encoded(lm, data_file), "feature", "feature")
    for detach in (True, False):
        loss = DFTLoss(lm, layers(lm), lc_signal="feature", et_signal="feature",
                       detach_english=detach)
        states = loss.english_states(batch.english)
        assert all(s.requires_grad is (not detach) for s in states.values())


# -- where the gradients go ---------------------------------------------------
def _grads(model) -> dict[str, torch.Tensor | None]:
    return {n.replace("._original_component", ""): p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["llama", "gemma3"])  # untied and tied embeddings
def test_lc_logits_gradient_stops_at_layer_i_and_skips_the_head(family, tiny_dirs, data_file):
    lm = load_model(str(tiny_dirs[family]))
    pairs = encoded(lm, data_file)
    loss = DFTLoss(lm, layers(lm), lc_signal="logits")
    batch = batch_for(lm, pairs, "logits", "off")
    loss.logits_pass(batch.lc_logits, loss.lc_hook).backward()
    grads = _grads(lm.hf_model)
    for name, grad in grads.items():
        if name.startswith("model.layers."):
            layer = int(name.split(".")[2])
            assert (grad is None) == (layer > LC), name
    assert grads["model.norm.weight"] is None
    emb = grads["model.embed_tokens.weight"]
    tied = lm.hf_model.get_output_embeddings().weight is lm.hf_model.model.embed_tokens.weight
    assert tied == (family == "gemma3")
    if not tied:
        assert grads["lm_head.weight"] is None
    # Only rows of tokens in the input receive gradient: nothing came through the projection.
    used = torch.zeros(emb.shape[0], dtype=torch.bool)
    used[batch.lc_logits.input_ids.unique()] = True
    assert emb[~used].abs().max() == 0 and emb[used].abs().max() > 0

    # Same embedding gradient as a direct computation with an explicitly detached head copy.
    model = reference_model(tiny_dirs[family])
    seqs = [p.lc.ids for p in pairs]
    states, _ = hidden_states(model, seqs, lm.tokenizer.pad_token_id)
    norm_w = model.model.norm.weight.detach().clone()
    x = states[LC + 1]
    variance = x.pow(2).mean(-1, keepdim=True)
    eps = getattr(model.model.norm, "variance_epsilon", None) or model.model.norm.eps
    normed = x * torch.rsqrt(variance + eps)
    normed = normed * ((1 + norm_w) if family == "gemma3" else norm_w)
    logits = normed @ model.lm_head.weight.detach().clone().T
    labels = torch.full(logits.shape[:2], -100)
    for b, (seq, p) in enumerate(zip(seqs, pairs)):
        labels[b, p.lc.prefix - 1 : len(seq) - 1] = torch.tensor(p.lc.continuation)
    F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100).backward()
    torch.testing.assert_close(emb, model.model.embed_tokens.weight.grad, rtol=1e-4, atol=1e-6)


def test_staged_backward_equals_one_backward(tiny_dirs, data_file):
    lm = load_model(str(tiny_dirs["gemma2"]))
    batch = batch_for(lm, encoded(lm, data_file), "feature", "logits")
    loss = DFTLoss(lm, layers(lm), lc_signal="feature", et_signal="logits", w_et=0.7)
    parts = loss.components(batch)
    parts["loss"].backward()
    ref = {n: p.grad.clone() for n, p in lm.hf_model.named_parameters() if p.grad is not None}
    lm.hf_model.zero_grad(set_to_none=True)
    values = loss.backward(batch)
    got = {n: p.grad for n, p in lm.hf_model.named_parameters() if p.grad is not None}
    assert got.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-7)
    assert values["loss"] == pytest.approx(float(parts["loss"].detach()), rel=1e-6)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_sparse_embedding_gradient_equals_dense(family, tiny_dirs, data_file):
    from dftlens.dft.prepare import densify_grads, sparse_embedding_grads

    lm = load_model(str(tiny_dirs[family]))
    batch = batch_for(lm, encoded(lm, data_file), "logits", "logits")
    loss = DFTLoss(lm, layers(lm), lc_signal="logits", et_signal="logits")
    params = list(lm.hf_model.parameters())
    loss.backward(batch)
    dense = [p.grad.clone() for p in params]
    lm.hf_model.zero_grad(set_to_none=True)
    sparse_embedding_grads(lm.hf_model)
    loss.backward(batch)
    # Untied: only sparse lookups reach the embedding; tied: the dense head gradient absorbs them.
    assert any(p.grad.is_sparse for p in params) == (family == "llama")
    densify_grads(params)
    for p, ref in zip(params, dense):
        torch.testing.assert_close(p.grad, ref, rtol=1e-5, atol=1e-7)


# -- prefix reuse in the logits passes ----------------------------------------
def _step_grads(lm, loss, batch, staged: bool):
    lm.hf_model.zero_grad(set_to_none=True)
    if staged:
        values = loss.backward(batch)
    else:
        parts = loss.components(batch)
        parts["loss"].backward()
        values = {k: float(v.detach()) for k, v in parts.items()}
    grads = {n: p.grad.clone() for n, p in lm.hf_model.named_parameters() if p.grad is not None}
    lm.hf_model.zero_grad(set_to_none=True)
    return values, grads


def _widened(directory, tmp_path):
    """A copy of a tiny Gemma whose sliding window (8) is widened to 512: rows keep their own prefixes."""
    import json
    import shutil

    wide = shutil.copytree(directory, tmp_path / "wide")
    config = json.loads((wide / "config.json").read_text())
    config["sliding_window"] = 512
    (wide / "config.json").write_text(json.dumps(config))
    return wide


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
@pytest.mark.parametrize("family", FAMILIES + ("gemma2-wide", "gemma3-wide"))
def test_prefix_reuse_equals_full_logits_passes(family, backend, tiny_dirs, data_file, tmp_path):
    base = family.removesuffix("-wide")
    path = _widened(tiny_dirs[base], tmp_path) if family.endswith("-wide") else tiny_dirs[base]
    lm = load_model(str(path), backend=backend)
    window = getattr(lm.hf_model.config, "sliding_window", None)
    batch = batch_for(lm, encoded(lm, data_file), "logits", "logits")
    kw = dict(lc_signal="logits", et_signal="logits", w_lc=0.5, w_et=2.0)
    full_loss, reuse_loss = DFTLoss(lm, layers(lm), **kw, reuse_prefix=False), DFTLoss(lm, layers(lm), **kw)
    seen, split = [], []
    original = reuse_loss.logits_pass
    reuse_loss.logits_pass = lambda packed, hook, prefix=None, lengths=None, *rest, frozen=True: (
        seen.append((lengths, packed.input_ids.shape[1])) if frozen else split.append(lengths),
        original(packed, hook, prefix, lengths, *rest, frozen=frozen))[1]
    ref_values, ref_grads = _step_grads(lm, full_loss, batch, staged=False)
    assert len(ref_grads) > 10
    for staged in (False, True):
        seen.clear()
        split.clear()
        values, grads = _step_grads(lm, reuse_loss, batch, staged)
        # The staged backward (logits signals only) also splits the main pass at the prefix: L_TFT
        # ran as a remainder on the shared keys/values.
        assert len(split) == int(staged) and all(int(lengths.max()) > 0 for lengths in split)
        # Both logits passes really started from the main pass's keys/values, each row from its
        # own prefix (the rows' prefixes differ in length: the masked cache slots are exercised),
        # except under the tiny Gemmas' 8-token window, where every row takes the shortest prefix.
        assert len(seen) == 2 and all(0 < int(lengths.max()) < width for lengths, width in seen)
        per_row = window is None or window >= 512
        assert all((int(lengths.min()) < int(lengths.max())) == per_row for lengths, _ in seen)
        for k in ("tft", "lc", "et", "loss"):
            assert values[k] == pytest.approx(ref_values[k], rel=1e-5, abs=1e-5), k
        assert grads.keys() == ref_grads.keys()
        for name in ref_grads:
            torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5)


def test_shared_prefix_is_the_longest_common_token_prefix():
    from dftlens.data.instructions import Segmented
    from dftlens.dft.batches import pack
    from dftlens.dft.prefix_reuse import shared_prefix

    def rows(*pairs):
        return pack([Segmented(p + c, len(p)) for p, c in pairs], pad_id=0, bos_id=2)

    main = rows(([2, 5, 6, 7], [9, 9]), ([2, 5, 8], [9]))
    # Row 0's joined text tokenised its query end differently: 3 tokens shared with the main pass;
    # row 1 shares more, but its first loss position (index 2) caps it.
    assert shared_prefix(main, rows(([2, 5, 6, 4, 4], [3]), ([2, 5, 8], [3, 3]))).tolist() == [3, 2]
    assert shared_prefix(main, rows(([2, 5, 6, 7], [3]), ([2, 5, 8, 1], [3]))).tolist() == [3, 3]
    assert shared_prefix(main, rows(([7, 5], [3]), ([2, 5], [3]))).tolist() == [0, 1]


def test_continuation_rows_start_after_their_own_prefix():
    from dftlens.data.instructions import Segmented
    from dftlens.dft.batches import IGNORE, pack
    from dftlens.dft.prefix_reuse import continuation
    from dftlens.models.engine_protocol import position_ids_from_mask

    other = pack([Segmented([2, 5, 6, 7, 8], 3), Segmented([2, 5, 9], 2)], pad_id=0, bos_id=2)
    new, targets = continuation(other, torch.tensor([3, 1]))
    # Row 0 continues after 3 cached positions, row 1 after 1 (its cached slots 1, 2 masked).
    assert new["input_ids"].tolist() == [[7, 8], [5, 9]]
    assert new["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 0, 0, 1, 1]]
    assert position_ids_from_mask(new["attention_mask"])[:, -2:].tolist() == [[3, 4], [1, 2]]
    assert targets.tolist() == [[8, IGNORE], [9, IGNORE]]
    assert targets.tolist() == [other.targets[0, 3:5].tolist(), other.targets[1, 1:3].tolist()]


def test_sliding_window_takes_the_shortest_prefix_when_slots_would_count(tiny_dirs):
    from types import SimpleNamespace

    from dftlens.data.instructions import Segmented
    from dftlens.dft.batches import pack
    from dftlens.dft.prefix_reuse import reusable

    main = pack([Segmented([2, 5, 6, 7, 9], 4), Segmented([2, 5, 9], 2)], pad_id=0, bos_id=2)
    other = pack([Segmented([2, 5, 6, 7, 3, 3], 4), Segmented([2, 5, 3, 3], 2)], pad_id=0, bos_id=2)

    def lm(window):
        return SimpleNamespace(config=SimpleNamespace(sliding_window=window))

    assert reusable(lm(None), main, [other]).tolist() == [3, 1]
    assert reusable(lm(6), main, [other]).tolist() == [3, 1]  # 3 cached + 3 new fit in the window
    assert reusable(lm(5), main, [other]).tolist() == [1, 1]  # they would not: no masked slots


# -- feature normalisations ---------------------------------------------------
def _reference_pooled(states, seqs, bos, norm, stats=None):
    rows = []
    for b, seq in enumerate(seqs):
        first = 1 if seq[0] == bos else 0
        tokens = states[b, first : len(seq)].double()
        if norm == "rms":
            tokens = tokens / torch.sqrt((tokens**2).mean(-1, keepdim=True) + 1e-6)
        rows.append(tokens.mean(0))
    pooled = torch.stack(rows)
    if norm in ("center", "standardize"):
        mean, var = stats
        pooled = pooled - mean
        if norm == "standardize":
            pooled = pooled / (var.sqrt() + 1e-6)
    return pooled


def _query_tokens(states, seqs, bos):
    return torch.cat([states[b, (1 if s[0] == bos else 0) : len(s)] for b, s in enumerate(seqs)]).double()


@pytest.mark.parametrize("norm", ["none", "center", "standardize", "rms"])
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_feature_norms_match_direct_computation(family, norm, tiny_models, tiny_dirs, data_file):
    lm = tiny_models[family]
    pairs = encoded(lm, data_file)
    loss = DFTLoss(lm, layers(lm), lc_signal="feature", et_signal="feature",
                   w_lc=1.0, w_et=3.0, feature_norm=norm)
    batch = batch_for(lm, pairs, "feature", "feature")
    model = reference_model(tiny_dirs[family])
    pad, bos = lm.tokenizer.pad_token_id, lm.tokenizer.bos_token_id
    tgt_seqs, en_seqs = [p.main.ids[: p.main.prefix] for p in pairs], [p.english.ids for p in pairs]
    with torch.no_grad():
        tgt, _ = hidden_states(model, tgt_seqs, pad)
        en, _ = hidden_states(model, en_seqs, pad)
    index = {"lc": LC + 1, "et": ET + 1, "last": len(en) - 1}
    running = {}
    for call in range(2):  # the second call checks the running average
        stats = {}
        for name, i in index.items():
            tokens = torch.cat([_query_tokens(en[i], en_seqs, bos), _query_tokens(tgt[i], tgt_seqs, bos)])
            mean, var = tokens.mean(0), tokens.var(0, unbiased=False)
            if name in running:
                mean = 0.9 * running[name][0] + 0.1 * mean
                var = 0.9 * running[name][1] + 0.1 * var
            stats[name] = running[name] = (mean, var)
        values = loss.backward(batch)
        lm.hf_model.zero_grad(set_to_none=True)
        lc = 1 - F.cosine_similarity(_reference_pooled(en[index["lc"]], en_seqs, bos, norm, stats["lc"]),
                                     _reference_pooled(tgt[index["lc"]], tgt_seqs, bos, norm, stats["lc"]))
        et = 1 - F.cosine_similarity(_reference_pooled(en[index["last"]], en_seqs, bos, norm, stats["last"]),
                                     _reference_pooled(tgt[index["et"]], tgt_seqs, bos, norm, stats["et"]))
        assert values["lc"] == pytest.approx(float(lc.mean()), rel=1e-4, abs=1e-5)
        assert values["et"] == pytest.approx(float(et.mean()), rel=1e-4, abs=1e-5)
        # The logged gradient norm: d(w * L)/d(target-side states), against autograd on the reference.
        tgt_states = tgt[index["et"]].detach().double().requires_grad_(True)
        et_ref = 1 - F.cosine_similarity(_reference_pooled(en[index["last"]], en_seqs, bos, norm, stats["last"]),
                                         _reference_pooled(tgt_states, tgt_seqs, bos, norm, stats["et"]))
        (grad,) = torch.autograd.grad(3.0 * et_ref.mean(), tgt_states)
        assert values["et_gnorm"] == pytest.approx(float(grad.norm()), rel=1e-3)
        assert values["lc_gnorm"] > 0


def test_feature_norm_is_validated(tiny_models):
    with pytest.raises(ValueError, match="feature_norm"):
        DFTLoss(tiny_models["llama"], feature_norm="whiten")


@pytest.mark.parametrize("backend", ["transformer_lens", "nnsight"])
def test_prefix_reuse_under_gradient_checkpointing(backend, tiny_dirs, data_file):
    """Checkpointed blocks must still read the reused keys/values (transformers drops a layer's
    ``cache`` kwarg under checkpointing unless it is passed the way the model passes it)."""
    lm = load_model(str(tiny_dirs["llama"]), backend=backend)
    model = lm.hf_model
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable(**{("activation_checkpointing_kwargs" if hasattr(model, "activation_checkpointing_enable")
               else "gradient_checkpointing_kwargs"): {"use_reentrant": False}})
    model.train()
    batch = batch_for(lm, encoded(lm, data_file), "logits", "logits")
    kw = dict(lc_signal="logits", et_signal="logits")
    ref_values, ref_grads = _step_grads(lm, DFTLoss(lm, layers(lm), **kw, reuse_prefix=False), batch, staged=True)
    values, grads = _step_grads(lm, DFTLoss(lm, layers(lm), **kw), batch, staged=True)
    for k in ("tft", "lc", "et", "loss"):
        assert values[k] == pytest.approx(ref_values[k], rel=1e-5, abs=1e-5), k
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5)
