"""The one model interface: names, captures, the logit lens, both engines, loading errors."""

from __future__ import annotations

import pytest
import torch

from dftlens import load_model
from dftlens.errors import LayerError, ModelNotAvailable
from dftlens.models import hook_name, parse_hook_name
from dftlens.models.engine_protocol import last_token_index

from conftest import ALL_FAMILIES, FAMILIES

BACKENDS = ("transformer_lens", "nnsight")
TEXTS = ['Français: "eau" - English: "water"', "the cat", "水"]


class _Models(dict):
    """family -> backend -> LensModel, loaded on first use, one set of weights per family."""

    def __init__(self, tiny_models, family_dir):
        super().__init__()
        self.tiny_models, self.family_dir = tiny_models, family_dir

    def __missing__(self, family):
        lm = self.tiny_models[family] if family in self.tiny_models else load_model(str(self.family_dir(family)))
        self[family] = {"transformer_lens": lm, "nnsight": lm.with_backend("nnsight")}
        return self[family]


@pytest.fixture(scope="module")
def models(tiny_models, family_dir):
    return _Models(tiny_models, family_dir)


def _hf_hidden(lm, batch):
    with torch.no_grad():
        out = lm.hf_model(**lm.model_inputs(batch), output_hidden_states=True)
    return out.hidden_states, out.logits


def test_hook_names_round_trip():
    assert hook_name(3) == "blocks.3.hook_resid_post"
    assert parse_hook_name("blocks.12.hook_resid_mid") == (12, "resid_mid")
    with pytest.raises(LayerError):
        parse_hook_name("blocks.x.hook_resid_post")
    with pytest.raises(LayerError):
        hook_name(1, "resid_sideways")


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_residuals_match_hf_hidden_states(models, family, backend):
    lm = models[family][backend]
    batch = lm.tokenize(TEXTS, padding_side="right")
    hidden, _ = _hf_hidden(lm, batch)
    names = lm.hook_names("resid_pre") + lm.hook_names("resid_post")
    cap = lm.capture(batch, names)
    mask = batch["attention_mask"].bool()
    for layer in range(lm.n_layers):
        torch.testing.assert_close(cap[hook_name(layer, "resid_pre")][mask], hidden[layer][mask], atol=1e-5, rtol=1e-4)
    for layer in range(lm.n_layers - 1):
        torch.testing.assert_close(cap[hook_name(layer)][mask], hidden[layer + 1][mask], atol=1e-5, rtol=1e-4)
    # HF's last hidden state is already normalised: ours is the raw residual.
    norm = lm.hf_model.get_submodule(lm.arch.norm_path)
    last = cap[hook_name(lm.n_layers - 1)]
    torch.testing.assert_close(norm(last)[mask], hidden[-1][mask], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_block_sites_add_up(models, family, backend):
    lm = models[family][backend]
    batch = lm.tokenize(TEXTS)
    cap = lm.capture(batch, [hook_name(1, s) for s in lm.sites])
    a = {s: cap[hook_name(1, s)] for s in lm.sites}
    if "resid_mid" in a:
        torch.testing.assert_close(a["resid_pre"] + a["attn_out"], a["resid_mid"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a["resid_mid"] + a["mlp_out"], a["resid_post"], atol=1e-5, rtol=1e-4)
    else:  # parallel attention (GPT-NeoX): both branches read resid_pre and are added together
        assert family == "gpt_neox" and lm.sites == ("resid_pre", "attn_out", "mlp_out", "resid_post")
        torch.testing.assert_close(a["resid_pre"] + a["attn_out"] + a["mlp_out"], a["resid_post"], atol=1e-5, rtol=1e-4)
        with pytest.raises(LayerError, match="no resid_mid site"):
            lm.capture(batch, [hook_name(1, "resid_mid")])


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_logit_lens_at_last_layer_is_the_models_logits(models, family, backend):
    lm = models[family][backend]
    batch = lm.tokenize(TEXTS, padding_side="left")
    _, logits = _hf_hidden(lm, batch)
    resid = lm.capture(batch, [hook_name(lm.n_layers - 1)], positions="last")[hook_name(lm.n_layers - 1)]
    rows = torch.arange(len(TEXTS))
    with torch.no_grad():
        torch.testing.assert_close(lm.unembed(resid), logits[rows, last_token_index(batch["attention_mask"])],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lm.unembed(resid, frozen=True), lm.unembed(resid))


def test_gemma2_soft_cap_is_applied(models):
    lm = models["gemma2"]["transformer_lens"]
    resid = torch.randn(2, lm.d_model) * 50
    with torch.no_grad():
        logits = lm.unembed(resid)
    assert logits.abs().max() <= lm.config.final_logit_softcapping + 1e-5


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_side_does_not_matter(models, family, backend):
    lm = models[family][backend]
    names = lm.hook_names()
    left = lm.capture(lm.tokenize(TEXTS, padding_side="left"), names, positions="last")
    right = lm.capture(lm.tokenize(TEXTS, padding_side="right"), names, positions="last")
    torch.testing.assert_close(left.stack(names), right.stack(names), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_backends_agree(models, family):
    tl, nn = models[family]["transformer_lens"], models[family]["nnsight"]
    batch = tl.tokenize(TEXTS)
    names = [hook_name(l, s) for l in range(tl.n_layers) for s in tl.sites]
    a, b = tl.capture(batch, names), nn.capture(batch, names)
    for name in names:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_flow_through_captures_and_stop_at_the_layer(tiny_dirs, backend):
    lm = load_model(str(tiny_dirs["llama"]), backend=backend)  # own copy: we touch .grad
    batch = lm.tokenize(TEXTS)
    calls = []
    handle = lm.hf_model.model.layers[2].register_forward_hook(lambda *a: calls.append(1))
    act = lm.capture(batch, [hook_name(1)], grad=True)[hook_name(1)]
    handle.remove()
    assert not calls, "a capture of layer 1 must not run layer 2"
    act.pow(2).mean().backward()
    layers = lm.hf_model.model.layers
    assert layers[0].mlp.down_proj.weight.grad is not None
    assert layers[1].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert layers[2].self_attn.q_proj.weight.grad is None
    no_grad = lm.capture(batch, [hook_name(1)])[hook_name(1)]
    assert not no_grad.requires_grad


@pytest.mark.parametrize("family", ["llama", "gemma3", "bloom"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_run_prefix_then_extend_equals_one_pass(models, family, backend):
    """A prefix run once (``run_prefix``) and continued (``KVPrefix.extend``) gives the activations of one
    pass over the whole batch, each row at its own positions (left padding; Gemma-3's 8-token window;
    BLOOM's ALiBi, which takes no position ids)."""
    lm = models[family][backend]
    batch = lm.tokenize(TEXTS, padding_side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    names = lm.hook_names()
    with torch.no_grad():
        full = lm.capture(batch, names)
        cap, prefix = lm.run_prefix({"input_ids": ids[:, :-2], "attention_mask": mask[:, :-2]}, [names[1]])
        assert list(cap) == [names[1]]  # the last block ran (its keys/values are cached) but is not returned
        assert prefix.length == ids.shape[1] - 2 and len(prefix.pairs) == lm.n_layers
        real = mask[:, :-2].bool()
        torch.testing.assert_close(cap[names[1]][real], full[names[1]][:, :-2][real], atol=1e-5, rtol=1e-4)
        rest = lm.capture(prefix.extend({"input_ids": ids[:, -2:], "attention_mask": mask}), names)
    for name in names:
        assert rest[name].shape[1] == 2
        torch.testing.assert_close(rest[name], full[name][:, -2:], atol=1e-5, rtol=1e-4)


def test_positions_tensor_selects_those_positions(models):
    lm = models["llama"]["transformer_lens"]
    batch = lm.tokenize(TEXTS, padding_side="right")
    full = lm.capture(batch, [hook_name(0)])[hook_name(0)]
    pos = torch.tensor([[0, 1], [0, 2], [0, 1]])
    some = lm.capture(batch, [hook_name(0)], positions=pos)[hook_name(0)]
    torch.testing.assert_close(some, full.gather(1, pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])))


def test_out_of_range_layer_is_a_clear_error(models):
    lm = models["llama"]["transformer_lens"]
    with pytest.raises(LayerError, match="out of range"):
        lm.capture(lm.tokenize(["x"]), ["blocks.99.hook_resid_post"])


def test_unknown_and_missing_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotAvailable, match="Unknown model"):
        load_model("no-such-alias")
    with pytest.raises(ModelNotAvailable, match="hf download meta-llama/Llama-2-7b-hf"):
        load_model("llama2-7b")
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))


def test_gguf_cache_ignores_half_written_directories(tmp_path, monkeypatch):
    from dftlens.models import gguf_cache

    monkeypatch.setenv("DFTLENS_CACHE", str(tmp_path))
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF" + bytes(4096))
    target = gguf_cache.cached_dir_for(fake)
    assert target.parent == tmp_path / "models"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # weights written, manifest not yet: incomplete
    assert not gguf_cache.is_complete(target)
    (target / gguf_cache.MANIFEST).write_text("{}")
    assert gguf_cache.is_complete(target)
    with gguf_cache.cache_lock("x"):  # the lock is re-entrant across calls, not within one
        pass


def test_unsupported_family_is_one_sentence_and_exit_2(tmp_path):
    from transformers import OPTConfig
    from typer.testing import CliRunner

    from dftlens.errors import DftlensError
    from dftlens_cli.app import app

    OPTConfig(hidden_size=64, num_hidden_layers=1, ffn_dim=128, num_attention_heads=4, vocab_size=64,
              architectures=["OPTForCausalLM"]).save_pretrained(tmp_path)
    with pytest.raises(DftlensError, match="does not support the OPTForCausalLM architecture"):
        load_model(str(tmp_path))
    result = CliRunner().invoke(app, ["lens", "--model", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "OPTForCausalLM" in result.output and "Traceback" not in result.output


def test_models_verb_lists_every_family():
    from typer.testing import CliRunner

    from dftlens.models.architecture import FAMILIES
    from dftlens_cli.app import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for fam in FAMILIES:
        assert fam.name in result.output


def test_capture_is_a_mapping_of_hook_names(models):
    lm = models["llama"]["transformer_lens"]
    names = [hook_name(0), hook_name(1)]
    cap = lm.capture(lm.tokenize(TEXTS), names)
    assert list(cap.keys()) == names and list(cap) == names and len(cap) == 2
    assert [n for n, act in cap.items() if act is cap[n]] == names


def test_cache_rename_deprecation_is_silenced_and_nothing_else(models):
    import logging
    import warnings

    import transformers.utils.generic as generic

    from dftlens.models import silence_cache_rename_warning

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(generic.__name__)
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO  # the suite may quiet transformers
    lm = models["llama"]["transformer_lens"]
    batch = lm.tokenize(["the cat sat"])
    try:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            silence_cache_rename_warning()  # pytest resets warning filters per test: install inside
            out = lm.hf_model(**lm.model_inputs(batch), use_cache=True)
            cache = out.past_key_values  # the old name, read: transformers logs the rename
            lm.hf_model(input_ids=batch["input_ids"][:, -1:], past_key_values=cache)  # passed: FutureWarning
            logger.warning("`past_key_values`/`cache_params` are deprecated. Use `cache` instead.")
            logger.warning("another transformers message")
            warnings.warn("another future warning", FutureWarning)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [r.getMessage() for r in records] == ["another transformers message"]
    assert [str(w.message) for w in caught if w.category is FutureWarning] == ["another future warning"]


def test_models_verb_shows_full_hugging_face_ids_at_80_columns():
    from typer.testing import CliRunner

    from dftlens.models.aliases import ALIASES
    from dftlens_cli.app import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert all(len(line) <= 80 for line in result.output.splitlines())
    for spec in ALIASES.values():
        assert spec.hf_id in result.output  # whole, on one line: what `hf download` needs
