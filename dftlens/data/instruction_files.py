"""Parallel instruction data for DFT: reading and validating the files (formatting is :mod:`.instructions`).

Each example is one instruction in English and in a target language. Accepted
layouts, one JSON object per line of a ``.jsonl`` file (or one row of a Hugging
Face dataset, see :func:`load_instructions`):

Alpaca per language (the paper's data: Alpaca and its translations)::

    {"id": "a1", "en": {"instruction": "...", "input": "", "output": "..."},
                 "zh": {"instruction": "...", "input": "", "output": "..."}}

``input`` may be empty or absent. ``{"query": ..., "response": ...}`` works in
place of instruction/input/output.

Flat (one column per field and language)::

    {"id": "a1", "query_en": "...", "response_en": "...", "query_zh": "...", "response_zh": "..."}

The *query* is the instruction, followed by a blank line and the input when there
is one; the *response* is the output. ``id`` is optional (the line number is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .jsonl import read_objects

BUNDLED_TRAIN = Path(__file__).resolve().parent / "bundled" / "instructions_train.jsonl"
BUNDLED_HELDOUT = Path(__file__).resolve().parent / "bundled" / "instructions_heldout.jsonl"


@dataclass
class Turn:
    """One instruction in one language: ``instruction``, ``input`` (may be empty), ``output`` (the response)."""

    instruction: str
    input: str
    output: str

    @property
    def query(self) -> str:
        """The query text: the instruction, then a blank line and the input when there is one."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


@dataclass
class InstructionPair:
    """One parallel example: the English and the target-language turn."""

    id: str
    en: Turn
    tgt: Turn
    where: str  # "file:line", for messages


@dataclass
class InstructionData:
    """The examples of one source: ``pairs``, ``source`` (path or ``hf:`` name), ``lang`` (the target)."""

    pairs: list[InstructionPair]
    source: str
    lang: str

    def __len__(self) -> int:
        return len(self.pairs)


# ---------------------------------------------------------------- loading ---
def load_instructions(source: str | Path | None, lang: str, limit: int | None = None) -> InstructionData:
    """Parallel (English, ``lang``) examples from a JSONL file or a Hugging Face dataset.

    ``source``: a ``.jsonl`` path; a directory written by ``Dataset.save_to_disk``;
    or ``hf:NAME`` / ``hf:NAME:SPLIT`` for a dataset already in the local Hugging
    Face cache (split defaults to ``train``). ``None`` is the bundled training set.
    """
    if lang == "en":
        raise DataError("The target language must not be English (--lang): DFT pairs English with another language.")
    source = str(BUNDLED_TRAIN if source is None else source)
    rows = _read_rows(source)
    pairs = []
    for where, row in rows:
        pairs.append(_parse_row(row, where, lang))
        if limit and len(pairs) >= limit:
            break
    if not pairs:
        raise DataError(f"{source} holds no examples.")
    return InstructionData(pairs, source, lang)


def _read_rows(source: str) -> list[tuple[str, dict]]:
    if source.startswith("hf:"):
        return _read_hf(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_hf(source, path)
    if not path.is_file():
        raise DataError(f"Instruction data {path} does not exist.")
    return list(read_objects(path))


def _read_hf(source: str, directory: Path | None = None) -> list[tuple[str, dict]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets ships with lm-eval
        raise DataError("Reading a Hugging Face dataset needs the `datasets` package.") from None
    try:
        if directory is not None:
            ds = datasets.load_from_disk(str(directory))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        else:
            name, _, split = source[3:].partition(":")
            ds = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # missing, offline, malformed: all the user's to fix
        raise DataError(f"Could not read the dataset {source} ({type(exc).__name__}: {exc}).") from None
    return [(f"{source} row {i}", dict(row)) for i, row in enumerate(ds)]


def _text(value, where: str, name: str, required: bool) -> str:
    if value is None:
        if required:
            raise DataError(f"{where}: field {name!r} is missing.")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, not {type(value).__name__}.")
    if required and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty.")
    return value.strip()


def _turn(row: dict, lang: str, where: str) -> Turn:
    if isinstance(row.get(lang), dict):
        obj, pre = row[lang], f"{lang}."
        if "query" in obj or "response" in obj:
            return Turn(_text(obj.get("query"), where, f"{pre}query", True), "",
                        _text(obj.get("response"), where, f"{pre}response", True))
        return Turn(_text(obj.get("instruction"), where, f"{pre}instruction", True),
                    _text(obj.get("input"), where, f"{pre}input", False),
                    _text(obj.get("output"), where, f"{pre}output", True))
    if f"query_{lang}" in row or f"response_{lang}" in row:
        return Turn(_text(row.get(f"query_{lang}"), where, f"query_{lang}", True), "",
                    _text(row.get(f"response_{lang}"), where, f"response_{lang}", True))
    present = sorted(k for k, v in row.items() if isinstance(v, dict)) or sorted(
        k.split("_", 1)[1] for k in row if k.startswith("query_"))
    raise DataError(
        f"{where}: language {lang!r} is not in this example (it has {', '.join(present) or 'no languages'}); "
        "choose another --lang or add the translations."
    )


def _parse_row(row: dict, where: str, lang: str) -> InstructionPair:
    return InstructionPair(str(row.get("id", where)), _turn(row, "en", where), _turn(row, lang, where), where)
