"""The run directory of ``dftlens train``: checking ``--out``, starting or resuming a run, the step log.

``run_config.yaml`` holds the run's settings (its one settings file; ``--config`` reruns it);
``log.jsonl`` one JSON object per optimizer step; ``final/`` is the ``from_pretrained``
directory, ``checkpoint-NNNNNN/`` the resumable ones (each with a ``run_config.json``: the
settings, the hooks trained and the input checksums a resume checks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import ownership
from ..config_files import RUN_CONFIG
from ..errors import DataError, OutputExists
from ..io import atomic_path, ensure_disk_space
from ..output_dirs import check_owned, check_writable, nearest_existing
from . import checkpoint as ckpt
from .config import TrainConfig

LOG = "log.jsonl"
FINAL = "final"


def prepare_run(cfg: TrainConfig, resume: Path | None, overwrite: bool, main: bool = True) -> tuple[Path, Path | None]:
    """Check the output directory before any expensive work; return (out, checkpoint to resume).

    Nothing is deleted or created here (see :func:`start_run_dir`, called once the
    data, the model and the hooks are known to work). ``main`` is kept for callers.
    """
    out = ownership.resolve_out(cfg.out)
    if resume is not None:
        check_owned(out, True, _run_file)  # resuming deletes old checkpoints: only a folder of ours
        found = ckpt.latest_checkpoint(resume)
        final_step = ckpt.checkpoint_step(out / FINAL)
        if found.resolve() != (out / FINAL).resolve() and final_step is not None and not overwrite:
            raise OutputExists(f"{out} already finished ({FINAL}/ at step {final_step}); resuming from {found.name} "
                               f"would replace {FINAL}/ and {LOG}, so pass --overwrite to do that.")
        cfg.check_inputs(_recorded_inputs(found, out))
        return out, found
    check_run_out(out, overwrite)
    return out, None


def _recorded_inputs(checkpoint: Path, out: Path) -> dict:
    """The input checksums a run recorded: in the checkpoint's ``run_config.json``, or, for runs written
    before checkpoints held them, in ``<out>/run_config.json``; {} when neither has them."""
    for path in (checkpoint / "run_config.json", out / "run_config.json"):
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("inputs")
        except (OSError, ValueError, AttributeError):
            continue
        if recorded:
            return recorded
    return {}


def _run_file(name: str) -> bool:
    """Whether ``name`` is one a train run writes in its directory (for runs without a manifest)."""
    return name in (LOG, "run_config.json", RUN_CONFIG, FINAL, "examples.jsonl") or bool(
        re.fullmatch(r"checkpoint-\d+", name))


def check_run_out(out: Path, overwrite: bool) -> None:
    """A new run's ``--out``: not a file; empty, or (with ``overwrite``) holding only what a dftlens run
    recorded as its own (:func:`dftlens.output_dirs.check_owned`); writable; with free space. Symlinks resolved."""
    out = ownership.resolve_out(out)
    if out.exists() and not out.is_dir():
        raise OutputExists(f"--out {out} is a file, not a directory; choose a directory (new or empty).")
    if out.is_dir() and check_owned(out, overwrite, _run_file) and not overwrite:
        raise OutputExists(f"{out} already holds a run; pass --overwrite to replace it, --resume {out} to "
                           "continue it, or choose another --out.")
    base = nearest_existing(out)
    if not base.is_dir():
        raise OutputExists(f"--out {out}: {base} is a file, not a directory; choose another --out.")
    check_writable(base)
    ensure_disk_space(base)


def start_run_dir(out: Path, overwrite: bool, world_size: int = 1) -> None:
    """Create ``out`` and its manifest; with ``overwrite`` first delete what the earlier run recorded there.

    Called after every check passed, so a run that fails early leaves the earlier one intact.
    Only paths in the earlier run's manifest (and leftovers of dead dftlens processes) are deleted
    (:func:`dftlens.ownership.remove_owned`). The new manifest lists the files the run writes
    (``log.jsonl``, ``run_config.yaml``, the optimizer shards of ``world_size`` processes); each
    checkpoint is added when saved (:func:`record_saved`).
    """
    if out.exists() and overwrite:
        ownership.remove_owned(out, ownership.read_manifest(out) or set())
    elif out.exists():
        ownership.remove_leftovers(out)  # only leftovers of dead runs were there (check_run_out)
    out.mkdir(parents=True, exist_ok=True)
    ownership.write_manifest(out, [LOG, RUN_CONFIG,
                                   *(ckpt.optimizer_shard_path(out, r).name for r in range(world_size))], "train")


def remove_leftovers(out: Path) -> None:
    """Delete what killed dftlens processes left in the run directory ``out`` (``.checkpoint-N.tmp-<pid>``,
    ``.<file>.tmp-<pid>-*``: :func:`dftlens.ownership.dead_temp`); nothing else is touched."""
    ownership.remove_leftovers(out)


def record_saved(out: Path, name: str) -> None:
    """Add the checkpoint (or ``final/``) folder ``name`` just saved in ``out`` to the run's manifest."""
    ownership.record(out, [name], "train")


def resume_config(resume: Path | str) -> TrainConfig:
    """The saved settings of the run to continue; its output directory is where the checkpoint lives."""
    resume = Path(resume)
    found = ckpt.latest_checkpoint(resume)
    cfg = TrainConfig.load(found / "run_config.json")
    cfg.out = str(resume if found != resume else resume.parent)
    return cfg


def curve_table(log: list[dict], max_rows: int = 20):
    """The loss curve as a short table (every step up to ``max_rows``, else evenly spaced rows)."""
    import pandas as pd

    frame = pd.DataFrame(log)
    if frame.empty:
        return frame
    if len(frame) > max_rows:
        keep = sorted({round(i * (len(frame) - 1) / (max_rows - 1)) for i in range(max_rows)})
        frame = frame.iloc[keep]
    columns = [c for c in ("step", "loss", "tft", "lc", "et", "lr", "grad_norm") if c in frame]
    frame = frame[columns].round({"loss": 4, "tft": 4, "lc": 4, "et": 4, "grad_norm": 3})
    return frame.assign(lr=frame["lr"].map("{:.2e}".format))


# -- the step log -------------------------------------------------------------
def read_log(out: Path, upto: int) -> list[dict]:
    """The step log's records up to step ``upto`` (inclusive); empty when ``out`` has no log."""
    path = out / LOG
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = row["step"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):  # a record cut short by a kill mid-write: the step after the checkpoint
                break
            raise DataError(f"{path}:{number}: a damaged step record; fix or delete that line.") from None
        if step <= upto:
            rows.append(row)
    return rows


def write_log(out: Path, rows: list[dict]) -> None:
    """Replace the step log of ``out`` by ``rows``, atomically.

    A resumed run writes back the records up to its checkpoint, dropping the steps after it.
    """
    with atomic_path(out / LOG) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def append_log(out: Path, record: dict) -> None:
    """Append one step's record to ``out``'s step log as a JSON line."""
    with (out / LOG).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
