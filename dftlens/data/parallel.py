"""Parallel word and sentence data: one row per concept, one column per language.

Files are JSONL (``{"id": "water", "en": "water", "fr": "eau", "zh": "水"}`` per
line) or CSV with the same columns; sentences may also come from a FLORES-200
directory. Every problem is reported with the file, line and field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import DataError
from .jsonl import check_utf8, read_objects
from .languages import FLORES_CODES


@dataclass
class ParallelData:
    """Aligned rows: ``rows[i][lang]`` is concept/sentence ``ids[i]`` in ``lang``.

    ``synonyms``: for files that list several words per cell (Dumas et al.'s), id -> language
    -> every word given, the first of which is ``rows[i][lang]``; empty otherwise.
    """

    ids: list[str]
    rows: list[dict[str, str]]
    source: str
    synonyms: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def words_of(self, item_id: str, lang: str) -> tuple[str, ...]:
        """Every word of concept ``item_id`` in ``lang``: its synonyms when the file lists them,
        else its one word (KeyError for an unknown id)."""
        listed = self.synonyms.get(item_id, {}).get(lang)
        if listed:
            return listed
        if getattr(self, "_row_of", None) is None or len(self._row_of) != len(self.ids):
            self._row_of = {i: row for i, row in zip(self.ids, self.rows)}
        return (self._row_of[item_id][lang],)

    @property
    def languages(self) -> list[str]:
        """The language codes present in every row, sorted (empty for no rows)."""
        return sorted(set.intersection(*(set(r) for r in self.rows))) if self.rows else []

    def column(self, lang: str) -> list[str]:
        """Every row's text in ``lang``, in row order (KeyError for a language the rows lack)."""
        return [r[lang] for r in self.rows]

    def by_language(self, languages: list[str]) -> dict[str, list[str]]:
        """``{lang: column(lang)}`` for each of ``languages``."""
        return {lang: self.column(lang) for lang in languages}

    def __len__(self) -> int:
        return len(self.rows)


def bundled_path(name: str) -> Path:
    """The path of a file bundled with dftlens under ``dftlens/data/bundled/``."""
    return Path(str(files("dftlens.data").joinpath("bundled", name)))


def load_words(path: str | Path | None = None, languages: list[str] | None = None) -> ParallelData:
    """Parallel words (one concept per row) from ``path``, default the bundled ``words.jsonl``.

    ``path`` may be dftlens's JSONL/CSV, or the word files of Wendler et al. (a
    ``data/langs/<lang>/clean.csv`` file or directory) or Dumas et al. (a
    ``data/<lang>/word_translation.csv`` file or directory), told apart by
    :func:`~dftlens.data.field_formats.word_file_format`.

    Raises:
        DataError: as :func:`load_parallel` (missing file, no rows, a missing or empty field for
            one of ``languages``, a repeated id), or a file or directory of unknown format.
    """
    from .field_formats import read_dumas, read_wendler, word_file_format

    path = Path(path) if path else bundled_path("words.jsonl")
    if not path.exists():
        raise DataError(f"Data file {path} does not exist.")
    fmt = word_file_format(path)
    if fmt == "dftlens":
        return load_parallel(path, languages)
    if fmt == "wendler":
        ids, rows = read_wendler(path, languages)
        synonyms = {}
    else:
        ids, rows, synonyms = read_dumas(path, languages)
    label = "Wendler et al." if fmt == "wendler" else "Dumas et al."
    raw = [(f"{path} ({label}, concept {concept!r})", {"id": concept, **row}) for concept, row in zip(ids, rows)]
    data = _parallel_rows(raw, languages, str(path))
    data.synonyms = {i: {lang: synonyms[i][lang] for lang in row if lang in synonyms.get(i, {})}
                     for i, row in zip(data.ids, data.rows)} if synonyms else {}
    return data


def load_sentences(path: str | Path | None = None, languages: list[str] | None = None) -> ParallelData:
    """Parallel sentences from a JSONL/CSV file or a FLORES-200 directory (default: bundled).

    A FLORES directory holds one ``{code}.dev`` or ``.devtest`` file per language (rows cut to the
    shortest file, ids ``flores-{i}``); ``languages`` defaults to English only there.

    Raises:
        DataError: as :func:`load_parallel`, or a FLORES directory without a file for a language.
    """
    path = Path(path) if path else bundled_path("sentences.jsonl")
    if path.is_dir():
        return _load_flores(path, languages)
    return load_parallel(path, languages)


def load_parallel(path: str | Path, languages: list[str] | None = None) -> ParallelData:
    """Read a JSONL or CSV parallel file; require ``languages`` in every row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.")
    return _parallel_rows(list(_read_rows(path)), languages, str(path))


def _parallel_rows(raw: list[tuple[str, dict]], languages: list[str] | None, source: str) -> ParallelData:
    """Check ``("where", row)`` pairs for every language in ``languages`` and build the data."""
    if not raw:
        raise DataError(f"{source} holds no rows.")
    needed = languages or sorted(k for k in raw[0][1] if k != "id")
    ids, rows = [], []
    for where, row in raw:
        for lang in needed:
            if lang not in row:
                raise DataError(f"{where}: no {lang!r} field; the file must have a column per requested language.")
            value = row[lang]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: field {lang!r} is empty or not text.")
        row_id = str(row.get("id") or where.rsplit(":", 1)[1])
        if row_id in ids:
            raise DataError(f"{where}: id {row_id!r} appears twice.")
        ids.append(row_id)
        rows.append({lang: row[lang].strip() for lang in needed})
    return ParallelData(ids, rows, source)


def _read_rows(path: Path):
    """(``"file:line"``, row) pairs from a CSV or JSONL file."""
    if path.suffix.lower() == ".csv":
        check_utf8(path)
        # utf-8-sig: with a byte-order mark the first header stays "fr" (not "\ufefffr").
        with path.open(encoding="utf-8-sig", newline="") as f:
            for line_no, row in enumerate(csv.DictReader(f), start=2):
                yield f"{path}:{line_no}", row
        return
    yield from read_objects(path)


def _load_flores(directory: Path, languages: list[str] | None) -> ParallelData:
    """A FLORES-200 split directory: one ``{code}.dev`` or ``.devtest`` file per language."""
    languages = languages or ["en"]
    columns = {}
    for lang in languages:
        stem = FLORES_CODES.get(lang, lang)
        found = sorted(directory.glob(f"{stem}.dev*"))
        if not found:
            raise DataError(f"{directory} has no FLORES file for {lang!r} (expected {stem}.dev or {stem}.devtest).")
        check_utf8(found[0])
        columns[lang] = found[0].read_text(encoding="utf-8-sig").splitlines()
    n = min(len(c) for c in columns.values())
    rows = [{lang: columns[lang][i] for lang in languages} for i in range(n)]
    return ParallelData([f"flores-{i}" for i in range(n)], rows, str(directory))
