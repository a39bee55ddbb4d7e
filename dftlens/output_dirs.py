"""Output folders: nothing overwritten by accident, one writer at a time, every file at once.

Whole output directories (``probe``, ``eval``, ``compare``, ``patch``, ...) go through
:func:`output_dir`: every file is written into a hidden sibling directory, which is then
swapped in with one rename (an atomic exchange where the OS has one), so Ctrl-C, a full
disk or a crash leaves either the earlier run or the new one, never a mix. An earlier run
is replaced only with ``overwrite``, only after the new one is complete, and only what its
manifest lists (:mod:`dftlens.ownership`): anything else in ``--out`` is refused before
any work, and a symlink ``--out`` is resolved first (results go into its target).

:func:`prepare_output_dir` checks ``--out`` before any work (not a file, writable,
no earlier results unless ``overwrite``, no files dftlens did not write, free
space) and, inside a CLI command (:func:`command_scope`), locks it until the
command ends: a second process writing the same ``--out`` is refused at once
(:class:`~dftlens.errors.OutputBusy`). Locks use the ``filelock`` package
(``.<name>.lock`` next to the real ``--out``, symlinks resolved, removed on release). A command that fails
leaves no ``--out`` behind and removes the parent folders it created. Single files are
:mod:`dftlens.io`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shlex
import shutil
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import ownership
from .config_files import RUN_CONFIG, write_run_config
from .errors import DftlensError, OutputBusy, OutputExists
from .io import ensure_disk_space


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def nearest_existing(path: Path) -> Path:
    """``path`` made absolute, or its nearest parent that exists (the filesystem root at worst)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(directory: Path, what: str = "--out") -> None:
    """Create and delete a file in ``directory`` (the only check a read-only mount cannot fool)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".dftlens-write-check-"):
            pass
    except OSError as exc:
        reason = "read-only file system" if exc.errno == errno.EROFS else (exc.strerror or str(exc)).lower()
        raise DftlensError(f"Cannot write to {directory} ({reason}); choose another {what}.") from None


def check_owned(out: Path, overwrite: bool, known: Callable[[str], bool]) -> list[str]:
    """The top-level entries of an existing ``--out`` when dftlens may write there; else refuse.

    Allowed: everything under ``out`` is listed in its manifest (:mod:`dftlens.ownership`) or is a
    leftover of a dead dftlens process. Refused (:class:`OutputExists`, one sentence): an entry
    no dftlens run recorded (named); results without a manifest (written before dftlens kept one:
    ``known(name)`` is True for every entry), which are never guessed at: the user removes them
    by hand. The caller refuses a non-empty result without ``overwrite``.
    """
    present = [name for name in _entries(out) if name != ownership.MANIFEST and not ownership.dead_temp(name)]
    if not present:
        return []
    owned = ownership.read_manifest(out)
    if owned is None:
        foreign = next((name for name in present if not known(name)), None)
        if foreign is None:
            raise OutputExists(
                f"{out} holds results of a dftlens version that did not record the files it wrote "
                f"({ownership.MANIFEST}), so dftlens will not replace or add to them; check them and remove them "
                f"by hand (rm -r {shlex.quote(str(out))}) or choose another --out.")
    else:
        foreign = ownership.foreign_entry(out, owned)
    if foreign is not None:
        raise OutputExists(f"{out} holds {_short(foreign)}, which no dftlens run recorded as its own; choose a new "
                           "or empty --out (--overwrite replaces only what a dftlens run wrote).")
    return present


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def check_output_dir(out: Path | str, outputs: Iterable[str], overwrite: bool = False) -> Path:
    """Refuse an unusable ``--out`` before any work; returns it resolved (nothing is created).

    ``outputs``: the names the command writes. A symlink is resolved first: the rules apply to
    its target, where the results will be written. Refused: a file; a directory holding
    anything a dftlens run did not record as its own (:func:`check_owned`); an earlier run
    unless ``overwrite``; a folder where this user cannot write; less free space than
    :data:`dftlens.io.MIN_FREE_BYTES`.
    """
    out = ownership.resolve_out(out)
    outputs = set(outputs)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"--out {out} is a file, not a directory; choose a directory (new or empty).")
    if out.is_dir():
        ours = check_owned(out, overwrite, lambda name: name in outputs)
        if ours and not overwrite:
            shown = ", ".join(_short(n) for n in ours[:6]) + (", ..." if len(ours) > 6 else "")
            raise OutputExists(f"{out} already holds {shown}; pass --overwrite to replace "
                               "them or choose another --out.")
    base = nearest_existing(out.parent)
    if not base.is_dir():
        raise OutputExists(f"--out {out}: {base} is a file, not a directory; choose another --out.")
    check_writable(base)
    ensure_disk_space(base)
    return out


def check_output_file(path: Path | str, overwrite: bool = False, what: str = "--csv") -> Path:
    """Refuse an unusable single output file before any work; returns it resolved (symlinks followed).

    Refused (:class:`OutputExists`): a directory; an existing file without ``overwrite``; with
    ``overwrite``, an existing file that no dftlens run recorded in its folder's manifest (see
    :func:`write_owned_csv`); a parent that is a file or not writable.
    """
    path = ownership.resolve_out(path)
    if path.is_dir():
        raise OutputExists(f"{what} {path} is a directory; give the name of a file to write.")
    if path.exists():
        if not overwrite:
            raise OutputExists(f"{path} already exists; pass --overwrite to replace it or choose another {what}.")
        if path.name not in (ownership.read_manifest(path.parent) or set()):
            raise OutputExists(f"{path} was not written by dftlens (no dftlens run recorded it in "
                               f"{ownership.MANIFEST} next to it), so --overwrite does not replace it; choose "
                               f"another {what}.")
    base = nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputExists(f"{what} {path}: {base} is a file, not a directory; choose another {what}.")
    check_writable(base, what)
    return path


# -- locks ---------------------------------------------------------------------------------
_HELD: dict[str, int] = {}  # lock files this process holds -> depth (the locks are re-entrant per process)


def lock_path(out: Path) -> Path:
    """The lock file of an output directory: ``.<name>.lock`` next to it, symlinks resolved first.

    A link and its target therefore share one lock (one writer, whichever path names it).
    """
    out = ownership.resolve_out(out)
    return out.parent / f".{out.name}.lock"


@contextmanager
def output_lock(out: Path | str) -> Iterator[Path]:
    """Hold the lock on ``out`` (re-entrant in this process); another holder -> :class:`OutputBusy`."""
    from filelock import FileLock, Timeout

    path = lock_path(Path(out))
    key = str(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusy(f"Another dftlens process is writing to {Path(out)}; wait for it to finish or "
                         "choose another --out.") from None
    _HELD[key] = 1
    try:
        yield path
    finally:
        del _HELD[key]
        # Unlink while still holding it: a process that opened this file meanwhile finds it
        # unlinked after its flock succeeds and retries on a new file (filelock checks st_nlink).
        try:
            path.unlink()
        except OSError:
            pass
        lock.release()


def _make_parents(directory: Path) -> list[Path]:
    """mkdir -p ``directory``; returns the folders it created, outermost first."""
    created = []
    for parent in reversed([directory, *directory.parents]):
        if parent.exists() and not parent.is_dir():
            _remove_if_empty(created)
            raise OutputExists(f"{parent} is a file, not a directory; choose another --out.")
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    return created


def _remove_if_empty(directories: list[Path]) -> None:
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            break


@contextmanager
def claim_output(out: Path | str, outputs: Iterable[str] = (), overwrite: bool = False,
                 check: bool = True) -> Iterator[Path]:
    """Check ``out``, create its missing parents and lock it for the block.

    If the block fails, the parents it created are removed again (when empty), so
    a failed run leaves no empty folders behind.
    """
    out = check_output_dir(out, outputs, overwrite) if check else ownership.resolve_out(out)
    created = _make_parents(out.parent)
    try:
        with output_lock(out):
            if check:  # again under the lock: another process may have finished meanwhile
                check_output_dir(out, outputs, overwrite)
            yield out
    except BaseException:
        _remove_if_empty(created)
        raise


# -- the CLI's command scope -----------------------------------------------------------------
_SCOPE: ContextVar[ExitStack | None] = ContextVar("dftlens_command_scope", default=None)


@contextmanager
def command_scope() -> Iterator[ExitStack]:
    """What a CLI command claims (output locks) is held until the command returns or fails."""
    with ExitStack() as stack:
        token = _SCOPE.set(stack)
        try:
            yield stack
        finally:
            _SCOPE.reset(token)


def prepare_output_dir(out: Path | str, outputs: Iterable[str], overwrite: bool) -> Path:
    """Check ``--out`` before an expensive run (see :func:`check_output_dir`).

    Inside :func:`command_scope` (every CLI command) it also locks ``--out`` until
    the command ends, so a second writer is refused before it starts working.
    """
    scope = _SCOPE.get()
    if scope is None:
        return check_output_dir(out, outputs, overwrite)
    return scope.enter_context(claim_output(out, outputs, overwrite))


# -- whole directories, swapped in at once ----------------------------------------------------
def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(new: Path, out: Path) -> None:
    """Make ``new`` be ``out``; of an earlier ``out`` only what its manifest lists is deleted."""
    if not out.exists():
        os.rename(new, out)
        return
    owned = ownership.read_manifest(out) or set()
    if _exchange(new, out):  # `new` now holds the earlier run
        old = new
    else:
        old = out.parent / f"{ownership.temp_prefix(out.name, 'old')}{os.urandom(4).hex()}"
        os.rename(out, old)
        os.rename(new, out)
    kept = ownership.remove_owned(old, owned)
    try:
        old.rmdir()
    except OSError:  # something appeared after the check: never deleted, only reported
        sys.stderr.write(f"warning: kept {len(kept)} entries dftlens did not write (such as {kept[0]}) in {old}\n")


@contextmanager
def output_dir(out: Path | str, outputs: Iterable[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden directory next to ``out``; when the block succeeds it becomes ``out``.

    Everything the block writes appears at once, with a manifest (:mod:`dftlens.ownership`)
    listing every path written. An earlier run in ``out`` is replaced only with ``overwrite``,
    only when its manifest lists everything there, and only then; if the block fails or is
    interrupted, ``out`` is as it was and the temporary directory is removed. A symlink ``out``
    is resolved: the results go to its target and the link stays.
    """
    outputs = list(outputs)
    with claim_output(out, outputs, overwrite) as out:
        ownership.clean_staging(out.parent, out.name)  # left by killed processes
        tmp = Path(tempfile.mkdtemp(prefix=ownership.temp_prefix(out.name), dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; results should read like any folder
        ownership.write_manifest(tmp, [])  # marks the staging folder as dftlens's
        swapped = False
        try:
            try:
                yield tmp
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                    raise
                raise DftlensError(f"The disk under {out.parent} filled up while saving; {out} was left as it "
                                   "was. Free some space and run again.") from None
            written = set(_entries(tmp)) - {ownership.MANIFEST}
            if not written <= set(outputs):
                raise RuntimeError(f"wrote {sorted(written - set(outputs))} not listed in outputs")  # a dftlens bug
            ownership.write_manifest(tmp, ownership.listing(tmp))
            _swap_in(tmp, out)
            swapped = True
        finally:
            if not swapped:
                shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def results_dir(out: Path | str, outputs: Iterable[str], overwrite: bool = False, config=None,
                verb: str | None = None, extra: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """:func:`output_dir` for a verb's results, with its settings file written first.

    Writes ``run_config.yaml`` from the config dataclass ``config`` (what ``dftlens <verb>
    --config`` reads back; none when None), calls ``extra(tmp)`` (the CLI's: every option of
    the run), then yields the staging folder; ``outputs``: the results' file names.
    """
    import dataclasses

    with output_dir(out, [*outputs, RUN_CONFIG], overwrite) as tmp:  # every file at once, or none
        if config is not None:
            write_run_config(tmp / RUN_CONFIG, dataclasses.asdict(config), verb)
        if extra is not None:
            extra(tmp)
        yield tmp
