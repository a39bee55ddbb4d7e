"""Parallel data files, prompt builders and their error messages."""

from __future__ import annotations

import json

import pytest

from dftlens.analysis.probe_run import ProbeConfig, run_probe
from dftlens.data.parallel import load_parallel, load_sentences, load_words
from dftlens.data.prompts import cloze_items, repetition_items, translation_items
from dftlens.errors import DataError

LANGS = ["en", "zh", "fr", "de", "ru", "ja", "es", "vi", "ar"]


def test_bundled_data_sizes_and_languages():
    words, sentences = load_words(), load_sentences()
    assert len(words) >= 150 and len(sentences) >= 100
    assert set(LANGS) <= set(words.languages) and set(LANGS) <= set(sentences.languages)
    assert words.rows[words.ids.index("water")]["fr"] == "eau"


def _write(tmp_path, lines, name="words.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_json_names_file_and_line(tmp_path):
    path = _write(tmp_path, ['{"id": "a", "en": "water", "fr": "eau"}', '{"id": "b", "en": '])
    with pytest.raises(DataError, match=r"words.jsonl:2: not valid JSON"):
        load_parallel(path)


def test_missing_language_names_line_and_field(tmp_path):
    path = _write(tmp_path, ['{"id": "a", "en": "water", "fr": "eau"}', '{"id": "b", "en": "fire"}'])
    with pytest.raises(DataError, match=r"words.jsonl:2: no 'fr' field"):
        load_parallel(path, ["en", "fr"])


def test_empty_field_names_line_and_field(tmp_path):
    path = _write(tmp_path, ['{"id": "a", "en": "water", "fr": "  "}'])
    with pytest.raises(DataError, match=r"words.jsonl:1: field 'fr' is empty"):
        load_parallel(path, ["en", "fr"])


def test_csv_reads_like_jsonl(tmp_path):
    path = _write(tmp_path, ["id,en,fr", "water,water,eau", "fire,fire,feu"], name="w.csv")
    data = load_parallel(path, ["en", "fr"])
    assert data.ids == ["water", "fire"] and data.column("fr") == ["eau", "feu"]


def test_pair_language_missing_from_file_is_reported(tmp_path, tiny_models):
    rows = [json.dumps({"id": f"w{i}", "en": f"word{i}", "fr": f"mot{i}", "zh": "水"}, ensure_ascii=False)
            for i in range(8)]
    path = _write(tmp_path, rows)
    config = ProbeConfig(pairs=[("fr", "ja")], tasks=["translation"], words=str(path), run_probes=False)
    with pytest.raises(DataError, match=r"no 'ja' field"):
        run_probe(tiny_models["llama"], config, progress=False)


def test_translation_prompts_follow_wendler_and_never_show_the_query():
    words = load_words(languages=["en", "fr", "zh"])
    items = translation_items(words, "fr", "zh")
    assert len(items) == len(words)
    for item in items[:50]:
        lines = item.prompt.split("\n")
        assert len(lines) == 5 and lines[-1] == f'Français: "{item.answer_input}" - 中文: "'
        assert all(line.startswith('Français: "') and line.endswith('"') for line in lines[:-1])
        assert not any(f'"{item.answer_input}"' in line or f'"{item.answer}"' in line for line in lines[:-1])
    assert items == translation_items(words, "fr", "zh")  # seeded: reproducible


def test_repetition_and_cloze_prompts():
    words = load_words(languages=["en", "fr"])
    rep = repetition_items(words, "fr")
    assert rep[0].task == "repetition" and rep[0].prompt.endswith(f'Français: "{rep[0].answer}" - Français: "')
    cloze = cloze_items(words, load_sentences(languages=["en", "fr"]), "fr")
    assert len(cloze) >= 20
    for item in cloze:
        assert item.prompt.endswith('" → "') and "___" in item.prompt.split("\n")[-1]
        assert item.answer not in item.prompt.split("\n")[-1]
