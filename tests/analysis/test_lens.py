"""Token-set rules, the MWork token classes, and the lens measurements."""

from __future__ import annotations

import pandas as pd
import pytest

from dftlens.analysis.lens import measure
from dftlens.analysis.writing_systems import classify, token_script
from dftlens.analysis.stats import mean_ci, summarise
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items


class FakeTokenizer:
    """A vocabulary and a whitespace 'tokenizer' that spells a leading space like the vocab does."""

    def __init__(self, vocab, space="▁"):
        self._vocab, self._ids, self.space = vocab, {i: t for t, i in vocab.items()}, space

    def get_vocab(self):
        return self._vocab

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self._vocab.get(self.space + w, 0) for w in text.split()]}

    def convert_ids_to_tokens(self, ids):
        return [self._ids[i] for i in ids]


def test_token_set_has_every_single_token_prefix_with_and_without_space_marker():
    vocab = {t: i for i, t in enumerate(["w", "wa", "water", "▁w", "▁water", "ater", "<0x77>", "▁水", "水", "<0xE6>"])}
    ts = TokenSets(FakeTokenizer(vocab))
    # No byte token where the first character has an ordinary one ("w", "水").
    assert ts.ids("water") == {vocab[t] for t in ["w", "wa", "water", "▁w", "▁water"]}
    assert ts.ids("水") == {vocab["▁水"], vocab["水"]}
    assert not ts.overlap("water", "水")


def test_byte_level_vocabularies_use_gpt2_byte_characters():
    vocab = {t: i for i, t in enumerate(["Ġa", "w", "wat", "Ġwater", "æ°´", "Ġæ", "Ġ"])}
    ts = TokenSets(FakeTokenizer(vocab, space="Ġ"))
    assert ts.ids("water") == {vocab["w"], vocab["wat"], vocab["Ġwater"]}
    # "水" is bytes e6 b0 b4 and a token of its own: the partial-byte "Ġæ" (which starts every
    # character beginning with byte e6) is byte fallback, not part of its set; a lone "Ġ" never is.
    assert ts.ids("水") == {vocab["æ°´"]}


def test_overlapping_words_are_detected_on_a_real_tokenizer(tiny_models):
    ts = TokenSets(tiny_models["llama"].tokenizer)
    assert ts.overlap("taxi", "taxis")  # shared prefixes


def test_scripts():
    assert token_script("▁water") == "Latin" and token_script("水") == "Han"
    assert token_script("ミズ") == "Kana" and token_script("вода") == "Cyrillic" and token_script("»") == "none"


@pytest.mark.parametrize("token, input_lang, target_lang, expected", [
    ("</b>", "fr", "zh", "other"),  # markup
    ("▁'", "fr", "zh", "other"),  # punctuation
    ("▁water", "fr", "zh", "en"),
    ("▁water", "zh", "fr", "en"),  # the same rule when the target is Latin-script
    ("▁eau", "zh", "fr", "target"),
    ("▁eau", "fr", "zh", "input"),
    ("水", "fr", "zh", "target"),
    ("水", "zh", "ja", "other"),  # as frequent in Chinese as in Japanese
    ("目", "de", "ja", "target"),
    ("▁Zeitung", "de", "ja", "input"),
    ("▁Zeitung", "fr", "zh", "other"),  # German: no language of a fr->zh item
    ("▁six", "fr", "zh", "other"),  # an English and a French word alike
    ("ung", "de", "ja", "other"),  # a fragment, no word
    ("▁L", "fr", "zh", "other"),  # one letter
    ("<0xE7>", "fr", "zh", "other"),  # a byte token
])
def test_token_language_classes(token, input_lang, target_lang, expected):
    ts = TokenSets(FakeTokenizer({"▁": 0}))
    assert classify(ts.text(token), 99, input_lang, target_lang) == expected


def test_answer_sets_decide_before_the_text():
    en, tgt, inp = frozenset({1}), frozenset({2}), frozenset({3})
    assert classify("anything", 2, "fr", "zh", en, tgt, inp) == "target"
    assert classify("anything", 1, "fr", "zh", en, tgt, inp) == "en"
    assert classify("anything", 3, "fr", "zh", en, tgt, inp) == "input"


def test_mean_ci_and_summary():
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and lo < 2.0 < hi
    frame = pd.DataFrame({"g": ["a"] * 3 + ["b"] * 2, "p": [0.1, 0.2, 0.3, 0.9, 1.0]})
    out = summarise(frame, ["g"], ["p"], bounds={"p": (0.0, 1.0)})
    assert list(out["n_items"]) == [3, 2] and out["p_hi"].max() <= 1.0


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_measure_is_padding_independent_and_well_formed(tiny_models, family):
    lm = tiny_models[family]
    items = translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[:6]
    ts = TokenSets(lm.tokenizer)
    side = lm.tokenizer.padding_side
    try:
        lm.tokenizer.padding_side = "left"
        left = measure(lm, items, ts, batch_size=4, progress=False)
        lm.tokenizer.padding_side = "right"
        right = measure(lm, items, ts, batch_size=3, progress=False)
    finally:
        lm.tokenizer.padding_side = side
    assert len(left) == len(items) * lm.n_layers
    cols = ["p_en", "p_target", "p_input", "entropy_bits", "share_en", "share_target"]
    pd.testing.assert_frame_equal(left[cols], right[cols], atol=1e-4, rtol=1e-3)
    assert left[["p_en", "p_target"]].stack().between(0, 1).all()
    shares = left[["share_en", "share_target", "share_input", "share_other"]].sum(axis=1)
    assert (shares - 1).abs().max() < 1e-9
    assert (left["entropy_bits"] >= 0).all() and (left["entropy_bits"] <= 11).all()  # vocab ~2^10
