"""Text inputs saved with a UTF-8 byte-order mark (as spreadsheet programs write them) read the same."""

from __future__ import annotations

from dftlens.data.instruction_files import load_instructions
from dftlens.data.parallel import bundled_path, load_parallel

BOM = "\ufeff"


def test_csv_with_bom_keeps_its_first_column(tmp_path):
    text = "id,fr,zh,en\nwater,eau,水,water\nfire,feu,火,fire\n"
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(BOM + text, encoding="utf-8")
    a, b = load_parallel(plain, ["fr", "zh", "en"]), load_parallel(marked, ["fr", "zh", "en"])
    assert b.ids == ["water", "fire"] == a.ids  # not line numbers
    assert b.rows == a.rows == [{"fr": "eau", "zh": "水", "en": "water"}, {"fr": "feu", "zh": "火", "en": "fire"}]
    # The first column being a language: no "no 'fr' field" error.
    fr_first = tmp_path / "fr_first.csv"
    fr_first.write_text(BOM + "fr,en\neau,water\n", encoding="utf-8")
    assert load_parallel(fr_first, ["fr", "en"]).rows == [{"fr": "eau", "en": "water"}]


def test_jsonl_with_bom(tmp_path):
    words = tmp_path / "words.jsonl"
    words.write_text(BOM + '{"id": "water", "fr": "eau", "en": "water"}\n', encoding="utf-8")
    assert load_parallel(words, ["fr", "en"]).ids == ["water"]
    lines = bundled_path("instructions_train.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    marked = tmp_path / "instructions.jsonl"
    marked.write_text(BOM + "\n".join(lines) + "\n", encoding="utf-8")
    data = load_instructions(str(marked), "zh")
    assert len(data) == 3
