"""Reading JSON Lines data files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def read_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ``("file:line", object)`` for every non-blank line; bad lines raise DataError."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
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
