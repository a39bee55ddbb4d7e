"""The one parser of comma lists and language pairs (dftlens.data.languages)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dftlens.data.languages import parse_pairs, split_list
from dftlens.errors import DataError
from dftlens_cli.app import app


def test_split_list_merges_repeats_and_commas():
    assert split_list(None) == []
    assert split_list("") == []
    assert split_list(" vi, ar ,,zh ") == ["vi", "ar", "zh"]
    assert split_list(["vi,ar", "zh", "vi"]) == ["vi", "ar", "zh"]
    assert split_list(("q_proj", "k_proj")) == ["q_proj", "k_proj"]


def test_parse_pairs_forms():
    assert parse_pairs("fr:zh, de:ja") == [("fr", "zh"), ("de", "ja")]
    assert parse_pairs(["fr-zh", ("de", "en"), "fr:zh"]) == [("fr", "zh"), ("de", "en")]
    assert parse_pairs("pt-br:en") == [("pt-br", "en")]  # a colon wins over a hyphen
    assert parse_pairs(None) == [] and parse_pairs("") == []


@pytest.mark.parametrize("bad", ["fr", "fr:fr", "fr:", ":zh", "fr:zh:ja"])
def test_parse_pairs_rejects(bad):
    with pytest.raises(DataError, match="needs two different languages"):
        parse_pairs(bad)


def test_parse_pairs_checks_known_languages():
    with pytest.raises(DataError, match=r"Retrieval pair 'fr:ja': no data for ja \(have en, fr\)"):
        parse_pairs(["fr:ja"], ["en", "fr"], what="retrieval pair")


def test_cli_bad_pair_is_one_sentence(tmp_path):
    result = CliRunner().invoke(app, ["probe", "--pairs", "fr:zh,fr", "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "A --pairs entry needs two different languages, like 'fr:zh'; got 'fr'." in " ".join(result.output.split())
    assert "Traceback" not in result.output
