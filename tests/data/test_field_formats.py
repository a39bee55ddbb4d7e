"""--words reads the field's word files: Wendler et al.'s and Dumas et al.'s (fixtures copied from
their repositories, see tests/fixtures/README.md), besides dftlens's JSONL/CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftlens.analysis.probe_run import ProbeConfig
from dftlens.data.field_formats import word_file_format
from dftlens.data.parallel import load_words
from dftlens.errors import DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_formats_are_detected():
    assert word_file_format(FIXTURES / "wendler") == "wendler"
    assert word_file_format(FIXTURES / "wendler" / "fr" / "clean.csv") == "wendler"
    assert word_file_format(FIXTURES / "dumas") == "dumas"
    assert word_file_format(FIXTURES / "dumas" / "fr" / "word_translation.csv") == "dumas"
    bundled = Path(load_words().source)
    assert word_file_format(bundled) == "dftlens"


def test_wendler_directory_joins_languages_on_the_english_word():
    words = load_words(FIXTURES / "wendler", ["en", "fr", "zh"])
    # fr has cloud, bag, mouth, soil, mountain, heart, hand, ...; zh has book, cloud, bag, ...: the join.
    row = dict(zip(words.ids, words.rows))
    assert row["cloud"] == {"en": "cloud", "fr": "nuage", "zh": "云"}
    assert row["mouth"] == {"en": "mouth", "fr": "bouche", "zh": "口"}
    assert "book" not in row  # not in the French file's first rows
    assert len(words) >= 5


def test_wendler_single_file_gives_english_and_its_language():
    words = load_words(FIXTURES / "wendler" / "de" / "clean.csv")
    assert words.languages == ["de", "en"] and words.rows[0] == {"de": "Buch", "en": "book"}


def test_dumas_file_takes_the_first_synonym():
    words = load_words(FIXTURES / "dumas" / "fr" / "word_translation.csv", ["en", "fr", "zh", "ja"])
    row = dict(zip(words.ids, words.rows))
    assert row["cloud"] == {"en": "cloud", "fr": "nuage", "zh": "雲", "ja": "雲"}
    assert row["bag"]["fr"] == "sac" and row["bag"]["en"] == "sack"  # their en list starts with 'sack'
    assert words.ids[:3] == ["cloud", "bag", "soil"]


def test_dumas_directory_reads_the_languages_files():
    words = load_words(FIXTURES / "dumas", ["en", "fr", "zh"])
    assert "book" in words.ids and "day" in words.ids  # book only in zh's file, day only in fr's


def test_probe_runs_its_prompts_from_a_peer_file():
    config = ProbeConfig(pairs=[("fr", "zh")], words=str(FIXTURES / "wendler"), run_probes=False)
    words, _ = config.load_data()
    assert set(words.languages) >= {"en", "fr", "zh"}


def test_unknown_formats_are_one_sentence(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="without word files dftlens knows"):
        load_words(tmp_path / "x")
    odd = tmp_path / "odd.csv"
    odd.write_text("word_original,note\nwater,liquid\n", encoding="utf-8")
    with pytest.raises(DataError, match="word_original column but neither"):
        load_words(odd)
    with pytest.raises(DataError, match="no ja/clean.csv"):
        load_words(FIXTURES / "wendler", ["en", "ja"])
    with pytest.raises(DataError, match="does not exist"):
        load_words(tmp_path / "missing.csv")


def test_dumas_synonyms_are_kept_for_the_token_sets():
    words = load_words(FIXTURES / "dumas" / "fr" / "word_translation.csv", ["en", "fr", "zh"])
    assert words.words_of("cloud", "zh") == ("雲", "云")  # the cell "['雲', '云']"
    assert words.words_of("bag", "fr")[:2] == ("sac", "sac plastique")
    bundled = load_words(None, ["en", "fr"])
    assert bundled.synonyms == {} and bundled.words_of("eye", "fr") == ("œil",)


def test_patching_sets_cover_every_synonym():
    from dftlens.analysis.patch_pairs import concept_pairs
    from dftlens.analysis.token_sets import TokenSets

    class Vocab:
        def get_vocab(self):
            return {t: i for i, t in enumerate(["雲", "云", "▁n", "nu", "▁s", "sa", "▁m", "山", "▁c", "心",
                                                "▁h", "手", "日", "▁j", "包", "袋", "土", "▁b", "▁d", "▁t", "▁w", "▁o", "▁l",
                                                "▁p", "▁a", "▁e", "▁g", "▁f", "▁r", "▁v", "<unk>"])}

    words = load_words(FIXTURES / "dumas" / "fr" / "word_translation.csv", ["en", "fr", "zh", "de", "ja"])
    ts = TokenSets(Vocab())
    pairs = concept_pairs(words, ("de", "fr"), ("fr", "zh"), ts, n_pairs=3, seed=0)
    assert pairs
    for pair in pairs:
        expected = frozenset().union(*(ts.ids(w) for w in words.words_of(pair["b"], "zh")))
        assert pair["sets"][2] == expected  # B in Y': every synonym's tokens
    cloud = [p for p in pairs if "cloud" in (p["a"], p["b"])]
    for pair in cloud:
        j = 0 if pair["a"] == "cloud" else 2
        assert pair["sets"][j] == {ts.vocab["雲"], ts.vocab["云"]}
