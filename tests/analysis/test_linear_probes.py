"""Linear probes: group splits, control task, retrieval, pooling and one tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dftlens.analysis.linear_probes import (
    COLUMNS,
    bootstrap_ci,
    control_labels,
    group_folds,
    lang_id_scores,
    latin_languages,
    pooling_weights,
    probe_summary,
    probe_table,
    retrieval_per_item,
    run_probes,
    sentence_representations,
)
from dftlens.data.languages import parse_pairs
from dftlens.errors import DataError

BUNDLED = Path(__file__).resolve().parents[2] / "dftlens" / "data" / "bundled"


def _bundled(n: int, langs=("en", "fr", "de", "zh")):
    rows = [json.loads(line) for line in (BUNDLED / "sentences.jsonl").read_text(encoding="utf-8").splitlines()[:n]]
    return {lang: [r[lang] for r in rows] for lang in langs}, [r["id"] for r in rows]


def _synthetic(n_langs=4, n_sent=40, d=32, signal=3.0, seed=0, vocab=60):
    """Reps [langs, sents, 2 layers, d]: layer 0 pure noise, layer 1 adds a per-language direction."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_langs, n_sent, 2, d))
    directions = rng.standard_normal((n_langs, d))
    noise[:, :, 1] += signal * directions[:, None, :]
    tokens = [[list(rng.integers(0, vocab, size=rng.integers(4, 10))) for _ in range(n_sent)] for _ in range(n_langs)]
    return noise.astype(np.float32), tokens


# ---- splits and control ------------------------------------------------------
def test_group_split_keeps_every_sentence_on_one_side():
    ids = [f"s{i:03d}" for i in range(23)]
    groups = np.tile(np.asarray(ids, dtype=object), 9)  # 9 languages of each sentence
    folds = group_folds(groups, n_splits=5, seed=3)
    assert len(folds) == 5
    seen_test = []
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(set(train) | set(test)) == len(groups)
        seen_test.extend(test)
    assert sorted(seen_test) == list(range(len(groups)))  # every item is tested exactly once
    with pytest.raises(DataError):
        group_folds(["s1"] * 9)


def test_control_labels_are_per_type_and_not_language():
    rng = np.random.default_rng(0)
    n_langs, n_sent = 4, 200
    # Each language has its own vocabulary and a type in every sentence (like "。").
    tokens = [[[1000 * (li + 1)] + list(1000 * (li + 1) + rng.integers(1, 80, size=6)) for _ in range(n_sent)]
              for li in range(n_langs)]
    flat = [t for lang in tokens for t in lang]
    langs = np.repeat(np.arange(n_langs), n_sent)
    ctrl = control_labels(flat, langs, n_langs, seed=0)
    assert np.array_equal(ctrl, control_labels(flat, langs, n_langs, seed=0))  # fixed seed
    assert set(ctrl) <= set(range(n_langs))
    # Same tokens in the same language -> same label, whatever their order.
    again = control_labels(flat + [list(reversed(flat[0]))], np.append(langs, 0), n_langs, seed=0)
    assert again[0] == again[-1]
    # Knowing only the language barely helps: per-language majority is near chance.
    lang_only = np.mean([np.bincount(ctrl[langs == li]).max() / n_sent for li in range(n_langs)])
    assert lang_only < 0.45  # chance is 0.25


def test_probe_finds_a_language_direction_and_the_control_does_not():
    reps, tokens = _synthetic()
    n_langs, n_sent = reps.shape[:2]
    y = np.repeat(np.arange(n_langs), n_sent)
    groups = np.tile(np.arange(n_sent), n_langs)
    ctrl = control_labels([t for lang in tokens for t in lang], y, n_langs)
    folds = group_folds(groups)
    signal = lang_id_scores(reps[:, :, 1].reshape(n_langs * n_sent, -1), y, ctrl, groups, folds, n_boot=50)
    assert signal["value"] > 0.95
    assert signal["control"] < 0.5
    assert signal["selectivity"] > 0.5
    assert signal["baseline"] == pytest.approx(1 / n_langs)
    assert signal["ci_low"] <= signal["value"] <= signal["ci_high"]
    noise = lang_id_scores(reps[:, :, 0].reshape(n_langs * n_sent, -1), y, ctrl, groups, folds, n_boot=50)
    assert noise["value"] < 0.5


# ---- retrieval ---------------------------------------------------------------
def test_retrieval_on_aligned_and_random_data():
    rng = np.random.default_rng(1)
    n, d = 50, 64
    content = rng.standard_normal((n, d))
    # Translations share content, each language adds a large constant offset.
    A = content + 0.1 * rng.standard_normal((n, d)) + 20 * rng.standard_normal(d)
    B = content + 0.1 * rng.standard_normal((n, d)) + 20 * rng.standard_normal(d)
    aligned = retrieval_per_item(A, B, centre=True)
    assert aligned["hit"].mean() == 1.0
    assert aligned["margin"].mean() > 0.5
    # The offset is what centring removes: un-centred cosines are all near 1.
    assert retrieval_per_item(A, B, centre=False)["margin"].mean() < aligned["margin"].mean()
    hits = [retrieval_per_item(rng.standard_normal((n, d)), rng.standard_normal((n, d)))["hit"].mean()
            for _ in range(20)]
    assert np.mean(hits) < 3 / n  # chance is 1/n
    assert abs(np.mean([retrieval_per_item(rng.standard_normal((n, d)), rng.standard_normal((n, d)))["margin"].mean()
                        for _ in range(5)])) < 0.05


def test_bootstrap_resamples_whole_groups():
    # Two groups with constant values 0 and 1: any resample mean is a multiple of 1/2.
    x = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    ci = bootstrap_ci(x, ["a", "a", "a", "b", "b", "b"], n_boot=100)
    assert set(np.round(ci.ravel() * 2, 6)) <= {0.0, 1.0, 2.0}
    assert np.allclose(bootstrap_ci(np.ones(10), np.arange(10)), 1.0)


def test_pairs_and_latin_detection():
    assert parse_pairs("fr:zh,de-en", ["en", "fr", "zh", "de"]) == [("fr", "zh"), ("de", "en")]
    with pytest.raises(DataError, match="ja"):
        parse_pairs(["fr:ja"], ["en", "fr"])
    sentences, _ = _bundled(10, ("en", "zh", "fr", "de", "ru", "ja", "es", "vi", "ar"))
    assert latin_languages(sentences) == ["en", "fr", "de", "es", "vi"]


# ---- pooling on real (tiny) models -------------------------------------------
def test_pooling_weights_drop_pads_and_bos():
    ids = torch.tensor([[0, 0, 2, 5, 6], [2, 5, 6, 7, 8], [5, 6, 0, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    w = pooling_weights(ids, mask, bos_token_id=2)
    assert w.tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [1, 1, 0, 0, 0]]  # row 3 has no BOS: kept
    assert pooling_weights(ids, mask, bos_token_id=None).tolist() == mask.float().tolist()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_representations_ignore_padding_and_bos(tiny_models, family):
    lm = tiny_models[family]
    sentences, _ = _bundled(5, ("en", "zh"))
    left = sentence_representations(lm, sentences, batch_size=4, progress=False, padding_side="left")
    right = sentence_representations(lm, sentences, batch_size=4, progress=False, padding_side="right")
    assert left.reps.shape == (2, 5, lm.n_layers, lm.d_model) and left.reps.dtype == np.float32
    assert left.layers == list(range(lm.n_layers))
    np.testing.assert_allclose(left.reps, right.reps, rtol=1e-4, atol=1e-4)
    # Reference: each sentence alone (no padding), mean over positions 1.. (BOS at 0 dropped).
    bos = lm.tokenizer.bos_token_id
    names = lm.hook_names()
    for li, lang in enumerate(left.langs):
        for si, text in enumerate(sentences[lang]):
            batch = lm.tokenize([text])
            assert batch["input_ids"][0, 0].item() == bos
            cap = lm.capture(batch, names)
            ref = torch.stack([cap[n][0, 1:].mean(0) for n in names]).float().numpy()
            np.testing.assert_allclose(left.reps[li, si], ref, rtol=1e-4, atol=1e-4)
            assert left.token_ids[li][si] == batch["input_ids"][0, 1:].tolist()
    some = sentence_representations(lm, sentences, layers=[1, 3], progress=False)
    np.testing.assert_allclose(some.reps, left.reps[:, :, [1, 3]], rtol=1e-4, atol=1e-4)


def test_run_probes_on_a_tiny_model(tiny_models):
    lm = tiny_models["llama"]
    sentences, ids = _bundled(8)
    df = run_probes(lm, sentences, pairs="fr:zh", ids=ids, progress=False, n_boot=30)
    assert list(df.columns) == COLUMNS
    assert set(df["layer"]) == set(range(lm.n_layers))
    assert set(df["probe"]) == {"lang_id_all", "lang_id_latin", "retrieval"}
    assert set(df.loc[df.probe == "retrieval", "lang_pair"]) == {"fr-en", "de-en", "zh-en", "fr-zh"}
    assert df.groupby(["layer", "probe", "metric", "lang_pair"], dropna=False).size().max() == 1
    acc = df[df.metric.str.startswith("accuracy")]
    for col in ("value", "ci_low", "ci_high", "baseline"):
        assert acc[col].between(0, 1).all(), col
    assert (acc["ci_low"] <= acc["value"] + 1e-12).all() and (acc["value"] <= acc["ci_high"] + 1e-12).all()
    lid = df[df.probe.str.startswith("lang_id")]
    assert lid["control"].between(0, 1).all()
    np.testing.assert_allclose(lid["selectivity"], lid["value"] - lid["control"])
    assert df.loc[df.probe == "retrieval", ["control", "selectivity"]].isna().all().all()
    assert lid.loc[lid.probe == "lang_id_all", "baseline"].eq(0.25).all()  # 4 balanced languages
    summary = probe_summary(df)
    assert list(summary["layer"]) == list(range(lm.n_layers))
    assert {"lang_id_all", "lang_id_all_sel", "lang_id_latin", "retrieval"} <= set(summary.columns)


def test_probe_table_on_synthetic_layers():
    reps, tokens = _synthetic(n_langs=3, n_sent=30)
    df = probe_table(reps, ["en", "fr", "zh"], tokens, layers=[4, 9], n_boot=20)
    lid = df[df.probe == "lang_id_all"].set_index("layer")["value"]
    assert lid[9] > 0.95 and lid[4] < 0.6
    assert set(df.loc[df.probe == "lang_id_latin", "layer"]) == {4, 9}  # en, fr
    with pytest.raises(ValueError):
        probe_table(reps, ["en", "fr"], tokens)
