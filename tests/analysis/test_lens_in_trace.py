"""The in-trace (nnsight/NDIF) logit lens: the same lens.csv as the TransformerLens engine, locally;
one sentence and exit code 2 when NDIF cannot be used."""

from __future__ import annotations

import pandas as pd
import pytest

from dftlens import load_model
from dftlens.analysis.probe_run import ProbeConfig, run_probe
from dftlens.errors import DftlensError

CONFIG = ProbeConfig(pairs=[("fr", "zh")], tasks=["translation", "repetition"], max_items=6, run_probes=False,
                     batch_size=4)
NUMERIC = ["p_en", "p_target", "p_input", "entropy_bits", "share_en", "share_target", "share_input", "share_other",
           "p_en_exclusive", "p_en_drop", "p_en_keep"]


def _lens_csv_difference(lm) -> float:
    in_trace = lm.with_backend("nnsight")
    in_trace.engine.lens_in_trace = True  # what remote=True does, here with local weights
    a = run_probe(lm, CONFIG, progress=False)
    b = run_probe(in_trace, CONFIG, progress=False)
    assert len(a.lens) == len(b.lens) > 0 and list(a.lens.columns) == list(b.lens.columns)
    num = a.lens.select_dtypes("number").columns
    pd.testing.assert_frame_equal(a.lens.drop(columns=num), b.lens.drop(columns=num))
    items = [c for c in NUMERIC if c in a.lens_items]
    assert (a.lens_items["top_tokens"] == b.lens_items["top_tokens"]).all()
    diff = max(float((a.lens[num] - b.lens[num]).abs().max().max()),
               float((a.lens_items[items] - b.lens_items[items]).abs().max().max()))
    assert a.choice.lc_layer == b.choice.lc_layer and a.choice.et_layer == b.choice.et_layer
    return diff


@pytest.mark.parametrize("family", ["llama", "gemma2", "gemma3"])
def test_in_trace_lens_csv_equals_transformer_lens(family, tiny_models):
    assert _lens_csv_difference(tiny_models[family]) < 1e-4


@pytest.mark.parametrize("family", ["gpt2", "bloom", "gpt_neox"])
def test_in_trace_lens_items_equal_on_other_layouts(family, family_dir):
    from dftlens.analysis.lens import measure
    from dftlens.analysis.token_sets import TokenSets
    from dftlens.data.parallel import load_words
    from dftlens.data.prompts import translation_items

    lm = load_model(str(family_dir(family)))
    items = translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[:5]
    ts = TokenSets(lm.tokenizer)
    a = measure(lm, items, ts, batch_size=3, progress=False).sort_values(["item_id", "layer"], ignore_index=True)
    in_trace = lm.with_backend("nnsight")
    in_trace.engine.lens_in_trace = True
    b = measure(in_trace, items, ts, batch_size=3, progress=False)
    b = b.sort_values(["item_id", "layer"], ignore_index=True)
    pd.testing.assert_frame_equal(a[NUMERIC + ["top_tokens", "correct"]], b[NUMERIC + ["top_tokens", "correct"]], atol=1e-4, rtol=0)


@pytest.mark.embedded
def test_in_trace_lens_csv_equals_transformer_lens_on_the_embedded_model(embedded_model):
    diff = _lens_csv_difference(embedded_model)
    print(f"embedded in-trace vs TransformerLens lens.csv max |diff| {diff:.2e}")
    assert diff < 1e-4


def test_remote_without_key_or_network_is_one_sentence(monkeypatch):
    from nnsight import CONFIG
    from typer.testing import CliRunner

    from dftlens_cli.app import app

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(DftlensError, match="needs an API key"):
        load_model("llama2-7b", backend="nnsight", remote=True)
    with pytest.raises(DftlensError, match="needs backend='nnsight'"):
        load_model("llama2-7b", remote=True)
    result = CliRunner().invoke(app, ["probe", "--model", "llama2-7b", "--backend", "nnsight", "--remote",
                                      "--no-probes"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "API key" in result.output and "Traceback" not in result.output
    monkeypatch.setattr(CONFIG.API, "APIKEY", "not-a-real-key")  # offline (HF_HUB_OFFLINE=1): no config to fetch
    with pytest.raises(DftlensError, match="network access"):
        load_model("meta-llama/Llama-2-7b-hf", backend="nnsight", remote=True)


def test_remote_takes_the_hugging_face_model_out_of_nnsights_language_model(tiny_dirs, monkeypatch):
    """After NDIF's config and tokenizer are fetched, ``load_remote`` takes the Hugging Face model out of
    nnsight's ``LanguageModel`` (``engines.nnsight_module``, the one read of an nnsight internal): a
    ``LanguageModel`` over a local tiny model stands in for the meta-weight one. Fails if nnsight
    renames the attribute."""
    import nnsight
    from nnsight import CONFIG, TransformersModel

    from dftlens.models.engines import nnsight_module

    local = load_model(str(tiny_dirs["llama"]), backend=None)
    wrapped = TransformersModel(local.hf_model, task="text-generation", tokenizer=local.tokenizer)
    assert nnsight_module(wrapped) is local.hf_model
    monkeypatch.setattr(CONFIG.API, "APIKEY", "not-a-real-key")
    monkeypatch.setattr(nnsight, "LanguageModel", lambda hf_id, **kwargs: wrapped)
    lm = load_model("meta-llama/Llama-2-7b-hf", backend="nnsight", remote=True)
    assert lm.hf_model is local.hf_model and lm.engine.model is wrapped
    assert lm.engine.remote and lm.lens_in_trace and lm.n_layers == local.n_layers
    with pytest.raises(DftlensError, match="no longer keeps the wrapped model"):
        nnsight_module(object.__new__(TransformersModel))
