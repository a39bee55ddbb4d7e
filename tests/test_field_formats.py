"""--words reads the field's word files: Wendler et al.'s and Dumas et al.'s (fixtures copied from
their repositories, see tests/fixtures/README.md), besides dftlens's JSONL/CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from dftlens.analysis.run import ProbeConfig
from dftlens.data.field_formats import word_file_format
from dftlens.data.parallel import load_words
from dftlens.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


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
