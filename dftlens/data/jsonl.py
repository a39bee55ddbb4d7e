"""Reading JSON Lines data files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def check_utf8(path: Path) -> None:
    """DataError naming the file, line and column of the first byte that is not UTF-8.

    The first read of every data file (JSONL, CSV, FLORES): a file that cannot be read
    (permissions, a directory, an I/O error) is a DataError naming it too.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}; check that it is a readable file.") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
                        "save the file as UTF-8.") from None


def read_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ``("file:line", object)`` for every non-blank line; bad lines raise DataError."""
    check_utf8(path)
    # utf-8-sig: a byte-order mark (as spreadsheet programs and some editors write) is not data.
    with Path(path).open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")  # columns count within the line, not its line break
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, found {type(row).__name__}.")
            yield where, row
