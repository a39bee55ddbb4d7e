"""Files written safely and read back: atomic single files, JSON and CSV.

Single files (:func:`atomic_path`, :func:`write_text`, :func:`write_json`,
:func:`write_csv`) are written to a temporary sibling and renamed into place, so
Ctrl-C, a full disk or a crash leaves the earlier file or the new one, never half of
one. JSON is always valid (RFC 8259: no bare ``NaN``); CSV cells a spreadsheet would
run as formulas are neutralised (OWASP) and restored by :func:`read_csv`;
:func:`read_json` turns a damaged file into one sentence. Whole output folders,
``--out`` checks and locks are :mod:`dftlens.output_dirs`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import ownership
from .errors import DftlensError


# Refuse to start a write when less than this is free: a full disk mid-write is
# the one failure the rename trick cannot undo for the user.
MIN_FREE_BYTES = 64 * 1024 * 1024


def ensure_disk_space(directory: Path, needed_bytes: int = MIN_FREE_BYTES) -> None:
    """Return quietly when at least ``needed_bytes`` (bytes) are free where ``directory`` is or will be.

    The free space is read at ``directory`` or, when it does not exist yet, its nearest existing
    parent.

    Raises:
        DftlensError: less is free (the message gives both in MiB).
    """
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise DftlensError(
            f"Only {free / 2**20:.0f} MiB free under {probe}; dftlens needs at least "
            f"{needed_bytes / 2**20:.0f} MiB there. Free some space or choose another --out."
        )


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=ownership.temp_prefix(path.name), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results should read like any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (temporary sibling, then a rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj: Any) -> Any:
    """``obj`` with every float NaN or infinity (numpy's too) replaced by None, in nested dicts/lists/tuples.

    JSON has no NaN: Python's ``json`` would write a bare ``NaN`` that other readers
    reject. Non-finite numbers that are errors stop a run before anything is written
    (:mod:`dftlens.numerics`); what is left here means "no value" (e.g. the standard
    error of one item) and is written as ``null``.
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):  # numpy float64 is a float too
        return None
    if hasattr(obj, "dtype") and getattr(obj, "shape", None) == () and hasattr(obj, "item"):  # numpy/torch scalar
        return json_safe(obj.item())
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as valid JSON text (RFC 8259: no ``NaN``/``Infinity``; see :func:`json_safe`), UTF-8 unescaped."""
    return json.dumps(json_safe(obj), indent=indent, ensure_ascii=False, default=str, allow_nan=False)


def read_json(path: Path | str, kind: type | None = None) -> Any:
    """The JSON value in ``path`` (a file dftlens or another tool wrote), or DataError in one sentence.

    ``kind`` (e.g. ``dict``): the type the top-level value must have. The error names the
    file and says what is wrong: cannot be read, not UTF-8, damaged (not valid JSON, with
    line and column), or the wrong kind of value. The one wording for a damaged JSON file:
    ``<path> is damaged: not valid JSON (<reason> at line L, column C).``, ``<path> is damaged:
    not UTF-8 text; save it as UTF-8.``
    """
    from .errors import DataError

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is damaged: not UTF-8 text; save it as UTF-8.") from None
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is damaged: not valid JSON ({exc.msg} at line {exc.lineno}, column "
                        f"{exc.colno}).") from None
    if kind is not None and not isinstance(value, kind):
        raise DataError(f"{path} is damaged: expected a JSON {'object' if kind is dict else kind.__name__}, "
                        f"found {type(value).__name__}.")
    return value


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented UTF-8 JSON (``str()`` for values JSON lacks), atomically.

    Always valid JSON: NaN and infinities are written as ``null`` (:func:`json_safe`).
    """
    write_text(path, json_text(obj) + "\n")


# OWASP "CSV Injection": a cell starting with one of these is a formula in Excel, LibreOffice, Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` (OWASP); anything else as it is.

    Text starting with ``= + - @`` TAB or CR gets a leading apostrophe, so a spreadsheet
    shows it as text. Text that already starts with apostrophes followed by one of them
    gets one more, so :func:`restore_cell` undoes exactly this (``read_csv``). Numbers are
    never changed (``-0.5`` stays a number).
    """
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """The inverse of :func:`neutralise_cell`: the text as dftlens had it before writing."""
    if isinstance(value, str) and value.startswith("'") and value.lstrip("'").startswith(FORMULA_STARTS):
        return value[1:]
    return value


def write_csv(path: Path | str, frame) -> None:
    """Write a DataFrame to ``path`` as UTF-8 CSV without its index, atomically.

    The one CSV writer of dftlens: text cells (and column names) that a spreadsheet
    would run as a formula are neutralised with a leading ``'`` (:func:`neutralise_cell`,
    OWASP's rule); :func:`read_csv` reads such a file back as it was.
    """
    import csv

    import pandas as pd

    frame = frame.copy()
    frame.columns = [neutralise_cell(c) for c in frame.columns]
    carriage_return = False
    for i, dtype in enumerate(frame.dtypes):
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype) \
                or isinstance(dtype, pd.CategoricalDtype):
            frame.isetitem(i, frame.iloc[:, i].astype(object).map(neutralise_cell))
            carriage_return |= bool(frame.iloc[:, i].map(lambda v: isinstance(v, str) and "\r" in v).any())
    with atomic_path(path) as tmp:  # Python's csv leaves a lone CR unquoted; readers then split the row there
        frame.to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL)


def read_csv(path: Path | str, **kwargs: Any):
    """A CSV written by :func:`write_csv` as a DataFrame, the neutralising apostrophes removed (pandas.read_csv)."""
    import pandas as pd

    frame = pd.read_csv(path, **kwargs)
    frame.columns = [restore_cell(c) for c in frame.columns]
    for i, dtype in enumerate(frame.dtypes):
        if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            frame.isetitem(i, frame.iloc[:, i].map(restore_cell))
    return frame


def write_owned_csv(path: Path | str, frame) -> Path:
    """Write ``frame`` to ``path`` (atomically, symlinks resolved) and record it in its folder's manifest."""
    path = ownership.resolve_out(path)
    write_csv(path, frame)
    ownership.record(path.parent, [path.name])
    return path
