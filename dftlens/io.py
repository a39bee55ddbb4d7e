"""Safe output: nothing half written, nothing overwritten by accident.

Every result file is written to a temporary sibling and renamed into place, so an
interrupted run leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import DftlensError, OutputExists

# Refuse to start a write when less than this is free: a full disk mid-write is
# the one failure the rename trick cannot undo for the user.
MIN_FREE_BYTES = 64 * 1024 * 1024


def ensure_disk_space(directory: Path, needed_bytes: int = MIN_FREE_BYTES) -> None:
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_csv(path: Path | str, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def prepare_output_dir(out: Path | str, outputs: list[str], overwrite: bool) -> Path:
    """Create ``out`` and check that none of ``outputs`` exists there unless ``overwrite``."""
    out = Path(out)
    existing = [name for name in outputs if (out / name).exists()]
    if existing and not overwrite:
        raise OutputExists(
            f"{out} already holds {', '.join(existing)}; pass --overwrite to replace "
            "them or choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    ensure_disk_space(out)
    return out
