"""Loading planned tasks through lm-eval's TaskManager, offline; missing data becomes a Skipped note."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from .task_table import BENCHMARKS, TASKS_DIR
from .offline import datasets_offline, is_missing_data, quiet_lm_eval
from .planning import PlannedTask, Skipped
from .skips import how_to_get
from .task_configs import xquad_task_config

log = logging.getLogger(__name__)


def task_manager_for(planned: Iterable[PlannedTask]):
    """A TaskManager that knows the dftlens task files and the lm-eval tasks ``planned`` needs.

    Indexing all of lm-eval (~15k task files) takes 10-20 s on a small CPU, so only
    the folders of the requested benchmarks are indexed; a raw lm-eval task name
    needs the full index.
    """
    from lm_eval.tasks import TaskManager

    planned = list(planned)
    lm_eval_root = _lm_eval_tasks_dir()
    dirs: list[Path] = []
    full = False
    for item in planned:
        bench = BENCHMARKS.get(item.benchmark)
        if bench is None:
            full = True
        elif bench.lm_eval_dirs:
            dirs.extend(lm_eval_root / d for d in bench.lm_eval_dirs if (lm_eval_root / d) not in dirs)
    if full:
        return TaskManager(include_path=str(TASKS_DIR))
    manager = TaskManager(include_path=[*(str(d) for d in dirs if d.is_dir()), str(TASKS_DIR)],
                          include_defaults=False)
    missing = [i.task_name for i in planned if isinstance(i.spec, str) and i.task_name not in manager.task_index]
    if missing:  # lm-eval moved its task folders: fall back to the full index
        manager = TaskManager(include_path=str(TASKS_DIR))
    return manager


def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def load_tasks(planned: list[PlannedTask], task_manager=None, offline: bool = True):
    """Build every planned task; a task whose data is missing becomes a Skipped note.

    Returns ``(task_dict, loaded, skipped)``: the merged lm-eval TaskDict for
    ``lm_eval.evaluator.evaluate``, the PlannedTasks that loaded, and the skips.
    A shipped dftlens task that fails to load is a bug and raises.
    """
    task_manager = task_manager or task_manager_for(planned)
    merged: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
    loaded: list[PlannedTask] = []
    skipped: list[Skipped] = []
    with datasets_offline(offline), quiet_lm_eval():
        for item in planned:
            try:
                spec = item.spec
                if item.benchmark == "xquad" and isinstance(spec, str):
                    spec = item.spec = xquad_task_config(task_manager, item.task_name, item.language)
                if isinstance(spec, str) and spec not in task_manager.task_index:
                    raise KeyError(spec)
                result = task_manager.load([spec])
            except KeyError as exc:
                if item.shipped:
                    raise
                skipped.append(Skipped(item.benchmark, item.language, f"lm-eval has no task {item.task_name!r}"
                                       " (check `lm_eval ls tasks`); skipped.", item.task_name, kind="no-task"))
                log.debug("no task %s: %s", item.task_name, exc)
                continue
            except Exception as exc:  # data missing, or a broken task: note it and go on
                if item.shipped:
                    raise
                if is_missing_data(exc) or item.benchmark == "mkqa":
                    kind, reason = "missing-data", how_to_get(item.benchmark, item.dataset) + " Skipped."
                else:
                    kind = "error"
                    reason = f"could not load {item.task_name} ({type(exc).__name__}: {str(exc)[:200]}); skipped."
                skipped.append(Skipped(item.benchmark, item.language, reason, item.task_name, kind, item.dataset))
                continue
            for key in ("tasks", "groups", "group_map"):
                merged[key].update(result.get(key) or {})
            item.members = list((result.get("tasks") or {}).keys())
            loaded.append(item)
    return merged, loaded, skipped
