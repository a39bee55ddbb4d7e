"""What dftlens wrote: the run manifest, and replacing or cleaning up only that.

Every output directory a dftlens run writes holds ``.dftlens-manifest.json``, the
list of every path (relative, POSIX) the run wrote there. ``--overwrite`` replaces
a directory only when everything in it is listed there (or is a leftover of a
dead dftlens process, below); a directory holding anything else is refused,
naming one such entry, and nothing dftlens did not write is ever deleted:
removal unlinks the listed files and links (a link is removed, never followed)
and removes a listed folder only once it is empty.

Leftovers: dftlens names its temporary files and folders ``.<name>.tmp-<pid>-...``
(or ``.old-<pid>``). One whose process is no longer alive is a leftover of a
killed run and is removed on the next start (a staging folder next to ``--out``
only when it also holds a manifest, i.e. dftlens made it).

Paths given as ``--out`` are resolved first (:func:`resolve_out`): with a symlink,
the rules apply to its target and the results are written there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

MANIFEST = ".dftlens-manifest.json"
_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)(?:-.*)?(?:\.[A-Za-z]+)?$")


def resolve_out(path: Path | str) -> Path:
    """``path`` with ``~`` expanded and every symlink resolved (the folder that is really written)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def temp_prefix(name: str, kind: str = "tmp") -> str:
    """The name prefix of this process's temporary sibling of ``name``: ``.<name>.<kind>-<pid>-``."""
    return f".{name}.{kind}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (or may exist: no permission to ask)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def dead_temp(name: str) -> bool:
    """True for a dftlens temporary name (``.<x>.tmp-<pid>...``) whose process is gone (not this one)."""
    match = _TEMP.match(name)
    return bool(match) and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1)))


def read_manifest(directory: Path) -> set[str] | None:
    """The paths a dftlens run recorded in ``directory``'s manifest; None without a readable manifest.

    Entries that are absolute or climb out (``..``) are ignored: a manifest only ever speaks for
    its own folder.
    """
    try:
        data = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
        paths = data["paths"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(paths, list):
        return None
    return {p for p in paths if isinstance(p, str) and p and not p.startswith("/") and ".." not in p.split("/")}


def listing(directory: Path) -> list[str]:
    """Every path under ``directory`` (relative, POSIX, parents before children); links are not followed."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        rel = Path(root).relative_to(directory)
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            found.append((rel / name).as_posix())
    return found


def write_manifest(directory: Path, paths: Iterable[str], verb: str | None = None) -> None:
    """Write ``directory``'s manifest listing ``paths`` (plus the manifest itself), atomically."""
    from importlib.metadata import version

    paths = sorted(set(paths) | {MANIFEST})
    text = json.dumps({"written_by": f"dftlens {version('dftlens')}", "verb": verb, "paths": paths},
                      indent=2, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(MANIFEST), dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, Path(directory) / MANIFEST)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def record(directory: Path, paths: Iterable[str], verb: str | None = None) -> None:
    """Add ``paths`` (relative to ``directory``; a folder adds everything under it) to its manifest."""
    directory = Path(directory)
    added = set()
    for path in paths:
        added.add(path)
        if (directory / path).is_dir() and not (directory / path).is_symlink():
            added.update(f"{path}/{sub}" for sub in listing(directory / path))
    write_manifest(directory, (read_manifest(directory) or set()) | added, verb)


def foreign_entry(directory: Path, owned: set[str]) -> str | None:
    """The first path under ``directory`` that is neither in ``owned`` nor a dead dftlens leftover; else None.

    A folder that is listed is searched too (something put inside it is foreign); a leftover's
    contents are not.
    """
    owned = set(owned) | {MANIFEST}
    for root, dirs, files in os.walk(directory, followlinks=False):
        rel = Path(root).relative_to(directory)
        keep = []
        for name in sorted(dirs) + sorted(files):
            path = (rel / name).as_posix()
            if rel == Path(".") and dead_temp(name):
                continue
            if path not in owned:
                return path
            if name in dirs:
                keep.append(name)
        dirs[:] = sorted(keep)
    return None


def remove_owned(directory: Path, owned: Iterable[str]) -> list[str]:
    """Delete the listed paths under ``directory`` (children first) and its dead leftovers.

    Files and links are unlinked (a link's target is never touched, nor anything reached through a
    linked folder); a folder is removed only once empty. Returns what stayed (anything not listed),
    relative.
    """
    directory = Path(directory)
    remove_leftovers(directory)
    for path in sorted(set(owned) | {MANIFEST}, key=lambda p: p.count("/"), reverse=True):
        target = directory / path
        if any(parent.is_symlink() for parent in target.parents if directory in parent.parents):
            continue  # a listed folder replaced by a link: never delete through it
        try:
            if target.is_symlink() or not target.is_dir():
                target.unlink()
            else:
                target.rmdir()
        except OSError:
            pass
    return listing(directory)


def remove_leftovers(directory: Path) -> None:
    """Delete the entries of ``directory`` that are temporaries of dead dftlens processes (:func:`dead_temp`)."""
    for name in os.listdir(directory):
        if dead_temp(name):
            _remove_tree(Path(directory) / name)


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def clean_staging(parent: Path, name: str) -> None:
    """Remove staging folders of ``name`` (``.<name>.tmp-<pid>-*``) in ``parent`` left by dead processes.

    Only a folder that holds a dftlens manifest (staging folders get one when created) is removed.
    """
    for path in Path(parent).glob(f".{name}.tmp-*"):
        if dead_temp(path.name) and path.is_dir() and not path.is_symlink() and (path / MANIFEST).is_file():
            shutil.rmtree(path, ignore_errors=True)
