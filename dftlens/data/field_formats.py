"""The word files of the field's public code, read as dftlens parallel words (``--words``).

- **Wendler et al. 2024** (github.com/epfl-dlab/llm-latent-language, ``data/langs/<lang>/clean.csv``
  or ``text.csv``): one CSV per language with the columns ``lang``, ``word_original`` (the
  English word), ``word_translation`` (the word in ``lang``) and prompt columns dftlens does
  not use. A single file gives English and its language; a directory holding
  ``<lang>/clean.csv`` files (their ``data/langs``, or the repository root) gives every
  language asked for, joined on ``word_original`` as their notebooks do (an inner join: a
  concept missing from one language's file is left out).
- **Dumas et al. 2025** (github.com/Butanium/llm-lang-agnostic, ``data/<lang>/word_translation.csv``):
  one CSV with a column per language, each cell a Python list of synonyms
  (``"['nuage', 'nuée']"``), and ``word_original`` (the English concept). dftlens takes the
  FIRST synonym of each cell as the word (the word their prompts use) and keeps every
  synonym in ``ParallelData.synonyms``: ``dftlens patch`` builds each answer's token set
  from all of them, as their code does. A directory holding ``<lang>/word_translation.csv`` files (their
  ``data``, or the repository root) reads the files of the languages asked for and keeps
  the first row of each concept; pass one language's file to get exactly the rows their
  code uses for that input language.

:func:`word_file_format` tells the formats apart from the path and the CSV header.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from ..errors import DataError
from .jsonl import check_utf8

WENDLER_COLUMNS = {"lang", "word_original", "word_translation"}
FORMATS = ("dftlens", "wendler", "dumas")


def _header(path: Path) -> tuple[list[str], list[str]]:
    """The CSV's header and first data row (empty lists for an empty file)."""
    check_utf8(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        return next(reader, []), next(reader, [])


def _peer_dir(path: Path) -> tuple[str, Path] | None:
    """(format, directory of ``<lang>/`` folders) for a peer repository's data directory, or None."""
    for fmt, name, inner in (("wendler", "clean.csv", ("data/langs", ".")), ("dumas", "word_translation.csv", ("data", "."))):
        for sub in inner:
            base = path / sub
            if base.is_dir() and any(base.glob(f"*/{name}")):
                return fmt, base
    return None


def word_file_format(path: str | Path) -> str:
    """``"dftlens"`` (JSONL, or CSV with a column per language), ``"wendler"`` or ``"dumas"``.

    Raises:
        DataError: a directory without either peer's files, or a CSV whose header is none of
            the formats (one sentence naming the accepted ones).
    """
    path = Path(path)
    if path.is_dir():
        found = _peer_dir(path)
        if found is None:
            raise DataError(f"{path} is a directory without word files dftlens knows: give a JSONL/CSV file, "
                            "Wendler et al.'s data/langs (<lang>/clean.csv) or Dumas et al.'s data "
                            "(<lang>/word_translation.csv).")
        return found[0]
    if path.suffix.lower() != ".csv":
        return "dftlens"
    header, first = _header(path)
    names = {h.strip() for h in header}
    if WENDLER_COLUMNS <= names:
        return "wendler"
    if "word_original" in names:
        if first and any(cell.strip().startswith("[") for cell in first):
            return "dumas"
        raise DataError(f"{path} has a word_original column but neither Wendler et al.'s columns (lang, "
                        "word_translation) nor Dumas et al.'s lists of synonyms; see the data formats page.")
    return "dftlens"


def read_wendler(path: str | Path, languages: list[str] | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(ids, rows) from Wendler et al.'s word file or ``data/langs`` directory (module docstring).

    Raises:
        DataError: a language without a file, a file of another language, an empty word.
    """
    path = Path(path)
    if path.is_dir():
        base = _peer_dir(path)[1]
        available = sorted(p.parent.name for p in base.glob("*/clean.csv"))
        wanted = [lang for lang in (languages or available) if lang != "en"]
        missing = [lang for lang in wanted if not (base / lang / "clean.csv").is_file()]
        if missing:
            raise DataError(f"{base} has no {', '.join(f'{m}/clean.csv' for m in missing)} (Wendler et al.'s files "
                            f"here: {', '.join(available)}).")
        files = [base / lang / "clean.csv" for lang in wanted]
    else:
        files = [path]
    tables = [_wendler_file(f) for f in files]
    order = list(tables[0][1]) if tables else []
    rows = []
    for concept in order:
        if all(concept in words for _, words in tables):
            rows.append({"en": concept, **{lang: words[concept] for lang, words in tables}})
    return [r["en"] for r in rows], rows


def _wendler_file(path: Path) -> tuple[str, dict[str, str]]:
    """(language, English word -> word) of one Wendler et al. CSV; the first row of a repeated concept wins."""
    check_utf8(path)
    words: dict[str, str] = {}
    langs = set()
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            en, word = (row.get("word_original") or "").strip(), (row.get("word_translation") or "").strip()
            lang = row.get("lang")
            if not en or not word:
                raise DataError(f"{path}:{line_no}: word_original or word_translation is empty.")
            langs.add((lang or "").strip())
            words.setdefault(en, word)
    if len(langs) != 1:
        raise DataError(f"{path}: the lang column holds {', '.join(sorted(langs))}; a Wendler et al. file is one language.")
    return langs.pop(), words


def read_dumas(path: str | Path, languages: list[str] | None = None
               ) -> tuple[list[str], list[dict[str, str]], dict[str, dict[str, tuple[str, ...]]]]:
    """(ids, rows, synonyms) from Dumas et al.'s ``word_translation.csv`` or ``data`` directory
    (module docstring): each cell's first synonym, ``en`` from the ``en`` column
    (``word_original`` when it has none); ``synonyms[id][lang]`` every word of the cell.

    Raises:
        DataError: a cell that is not a list of words, an empty list, a missing language file.
    """
    path = Path(path)
    if path.is_dir():
        base = _peer_dir(path)[1]
        wanted = [lang for lang in (languages or []) if (base / lang / "word_translation.csv").is_file()]
        files = [base / lang / "word_translation.csv" for lang in wanted] or sorted(base.glob("*/word_translation.csv"))
    else:
        files = [path]
    seen: dict[str, dict[str, str]] = {}
    synonyms: dict[str, dict[str, tuple[str, ...]]] = {}
    for file in files:
        for concept, row, listed in _dumas_file(file):
            if concept not in seen:
                seen[concept], synonyms[concept] = row, listed
    return list(seen), list(seen.values()), synonyms


def _dumas_file(path: Path):
    """(concept, {lang: first synonym}, {lang: every synonym}) per row of one Dumas et al. CSV."""
    check_utf8(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            concept = (row.get("word_original") or "").strip()
            out, listed = {}, {}
            for lang, cell in row.items():
                if lang == "word_original" or cell is None:
                    continue
                try:
                    synonyms = ast.literal_eval(cell)
                except (ValueError, SyntaxError):
                    raise DataError(f"{path}:{line_no}: column {lang!r} is not a list of words ({cell[:40]!r}).") from None
                if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
                    raise DataError(f"{path}:{line_no}: column {lang!r} is not a list of words.")
                if synonyms:
                    out[lang], listed[lang] = synonyms[0], tuple(w for w in synonyms if w.strip())
            out.setdefault("en", concept)
            yield concept, out, listed
