"""Run lm-evaluation-harness, zero-shot, on one or several models side by side.

The tasks are loaded once (offline unless ``allow_download``); each model is then
loaded through :func:`dftlens.load_model` (alias, Hugging Face id, local
checkpoint or .gguf, exactly as everywhere else in dftlens), wrapped as an lm-eval
model without reloading (:class:`~dftlens.evaluation.harness.DftlensHFLM`) and run
on the same tasks with the same ``limit``. The result is a tidy table: one row per
(model, task, language, metric).
"""

from __future__ import annotations

import gc
import math
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd

from ..data.languages import split_list
from ..errors import DataError, DftlensError
from ..models.interface import LensModel
from ..models.loading import check_remote_code, load_model
from ..models.name_resolution import resolve
from ..numerics import guard_forward
from .config import EvalConfig
from .offline import quiet_lm_eval
from .planning import PlannedTask, Skipped, plan
from .skips import summarize_skips
from .task_loading import load_tasks, task_manager_for

COLUMNS = ["model", "task", "language", "metric", "value", "stderr", "n", "lm_eval_task"]


@dataclass
class EvalRun:
    """What ``dftlens eval`` produced: the tidy results plus everything needed to read them."""

    frame: pd.DataFrame  # COLUMNS; value and stderr in [0, 1]
    models: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def auto_threads() -> int:
    """CPU threads for torch: the cores the 1-minute load average leaves idle (at least 1).

    On a shared CPU, OpenMP threads that wait on busy cores make a forward pass
    several times slower than a single thread does, so oversubscription is avoided.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - not on Unix
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (None or 0: leave it), then restore it."""
    import torch

    if not threads:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _float(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _labels(models: Sequence[str]) -> list[str]:
    """Model labels for the table; the same name twice gets #2, #3."""
    seen: dict[str, int] = {}
    out = []
    for name in models:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def result_rows(results: dict, item: PlannedTask, model: str, n_samples: dict | None = None) -> list[dict]:
    """Rows of the tidy table for one planned task from lm-eval's ``results`` dict."""
    if item.task_name in results:
        names = [item.task_name]
        counts = [(n_samples or {}).get(m, {}).get("effective") for m in (item.members or [item.task_name])]
        n_total = sum(c for c in counts if c is not None) or None
    else:  # a tag: report each member task
        names = [m for m in item.members if m in results]
        n_total = None
    rows = []
    for name in names:
        entry = results[name]
        n = n_total if n_total is not None else (n_samples or {}).get(name, {}).get("effective")
        language = item.language
        if not language and name != item.task_name:
            match = re.search(r"_([a-z]{2,3})$", name)
            language = match.group(1) if match else ""
        for key, value in entry.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            if item.metrics is not None and metric not in item.metrics:
                continue
            if isinstance(value, (list, dict, str)) and not isinstance(value, bool):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    continue
            label = item.rename.get(metric, metric)
            if filt not in ("none", ""):
                label = f"{label} ({filt})"
            rows.append({
                "model": model, "task": item.benchmark, "language": language, "metric": label,
                "value": _float(value), "stderr": _float(entry.get(f"{metric}_stderr,{filt}")),
                "n": n, "lm_eval_task": name,
            })
    return rows


def evaluate_models(cfg: EvalConfig, lm: LensModel | Sequence[LensModel | None] | None = None, *,
                    log: Callable[[str], None] | None = None) -> EvalRun:
    """Evaluate ``cfg.models`` zero-shot on ``cfg.tasks`` x ``cfg.langs``; see :class:`EvalRun`.

    The shape of every dftlens verb, ``verb(cfg, lm=None)`` (as :func:`dftlens.dft.trainer.train`).
    ``cfg.models`` are names for :func:`dftlens.load_model` (alias, Hugging Face id, local
    checkpoint, .gguf), loaded one after the other without an engine (evaluation needs only
    the plain Hugging Face model) with ``cfg``'s load settings; the first one is the reference
    for differences, and the names label the table's rows (the same name twice: ``#2``).

    ``lm``: models already loaded, so a notebook need not load them again. None (load every
    model), one :class:`~dftlens.LensModel` (stands for ``cfg.models[0]``, which must then
    name one model) or a sequence as long as ``cfg.models`` whose entry ``i`` (a LensModel,
    or None to load ``cfg.models[i]``) stands for ``cfg.models[i]``.

    ``cfg.tasks`` are suite names ("shipped", "paper", "paper-qa", "paper-understanding",
    "all"), benchmark names (``task_table.BENCHMARKS``) or raw lm-eval task names;
    ``cfg.limit`` caps the documents per task (quick runs); benchmarks without data on this
    machine are skipped with a note. ``cfg.threads`` 0: :func:`auto_threads`. ``log``
    receives one line per stage.

    Raises:
        DftlensError: no model, or ``lm`` does not match ``cfg.models``.
        DataError: an unknown task, or nothing can run here (before any model loads).
        ModelNotAvailable: a named model is not on this machine (before any task runs).
        NonFiniteError: a forward pass's logits hold NaN or inf (naming the first block whose
            output does; :func:`dftlens.numerics.guard_forward`).
    """
    say = log or (lambda message: None)
    given = _given_models(cfg, lm)
    labels = _labels(list(cfg.models))
    start = time.perf_counter()
    tasks = _load_tasks(cfg, say)
    rows: list[dict] = []
    model_seconds: dict[str, float] = {}
    with torch_threads(cfg.threads or auto_threads()):
        for name, model, label in zip(cfg.models, given, labels):
            t0 = time.perf_counter()
            if model is None:
                say(f"loading {name}")
                model = load_model(name, backend=None, **cfg.load_kwargs())
            rows += _evaluate_one(model, label, tasks, cfg, say)
            del model
            gc.collect()
            model_seconds[label] = time.perf_counter() - t0
    settings = {"tasks": list(cfg.tasks), "langs": list(cfg.langs), "limit": cfg.limit, "batch_size": cfg.batch_size,
                "offline": not cfg.allow_download, "threads": cfg.threads, "zero_shot": True}
    return EvalRun(pd.DataFrame(rows, columns=COLUMNS), labels, tasks.skipped, tasks.notes,
                   time.perf_counter() - start, model_seconds, settings)


def _given_models(cfg: EvalConfig, lm: LensModel | Sequence[LensModel | None] | None) -> list:
    """One entry per ``cfg.models``: the loaded model given for it, or None (load it); checks what can fail early.

    Raises DftlensError when there is no model or ``lm`` does not match ``cfg.models``; ModelNotAvailable
    (or the remote-code refusal) for a named model that cannot load, before any task runs.
    """
    if not cfg.models:
        raise DftlensError("No model given; pass --model (repeat it to compare checkpoints).")
    if lm is None:
        given = [None] * len(cfg.models)
    elif isinstance(lm, (list, tuple)):
        given = list(lm)
    else:
        given = [lm]
    if len(given) != len(cfg.models):
        raise DftlensError(f"{len(given)} loaded model(s) for the {len(cfg.models)} model(s) of the config; pass "
                           "one entry per name in cfg.models (None to load that one).")
    trust = bool(cfg.trust_remote_code)
    for name, model in zip(cfg.models, given):  # an unavailable model (or one shipping code) fails now
        if model is None:
            check_remote_code(resolve(name).path, trust)
    return given


@dataclass
class _Tasks:
    """The lm-eval tasks of a run, loaded once: what runs (``loaded``, ``task_dict``), what not and why."""

    loaded: list[PlannedTask]
    task_dict: dict
    skipped: list[Skipped]
    notes: list[str]


def _load_tasks(cfg: EvalConfig, say: Callable[[str], None]) -> _Tasks:
    """Plan and load ``cfg``'s tasks (offline unless ``allow_download``); DataError for a typo or nothing to run."""
    planned, skipped = plan(split_list(cfg.tasks), split_list(cfg.langs), mkqa_file=cfg.mkqa_file)
    with quiet_lm_eval():
        manager = task_manager_for(planned)
    task_dict, loaded, missing = load_tasks(planned, manager, offline=not cfg.allow_download)
    skipped += missing
    unknown = [s.task_name or s.benchmark for s in skipped if s.kind == "no-task"]
    if unknown:  # a typo, not missing data: stop before any model loads
        raise DataError(f"Unknown task {', '.join(unknown)}: not a dftlens benchmark or suite and not an lm-eval "
                        "task; `dftlens eval --list-tasks` shows what runs here.")
    if not loaded:
        reasons = "; ".join(line.rstrip(". ") for line in summarize_skips(skipped))
        raise DataError(f"Nothing to evaluate: {reasons}.")
    if skipped:
        say(f"{len(skipped)} benchmark/language cell(s) not run (listed at the end)")
    notes = sorted({f"{i.benchmark} ({i.language}): {i.note}" for i in loaded if i.note})
    return _Tasks(loaded, task_dict, skipped, notes)


def _evaluate_one(lens_model, label: str, tasks: _Tasks, cfg: EvalConfig, say: Callable[[str], None]) -> list[dict]:
    """The tidy rows of one loaded model on every loaded task (lm-eval's ``evaluate`` on the model as it is)."""
    from lm_eval import evaluator

    from .harness import DftlensHFLM

    lm = DftlensHFLM(lens_model.hf_model, lens_model.tokenizer, batch_size=cfg.batch_size)
    say(f"evaluating {label} on {len(tasks.loaded)} task(s)" + (f", {cfg.limit} documents each" if cfg.limit else ""))
    layers_path = getattr(getattr(lens_model, "arch", None), "layers_path", None)
    with quiet_lm_eval(), _offline_if(not cfg.allow_download), guard_forward(lens_model.hf_model, layers_path, label):
        out = evaluator.evaluate(lm=lm, task_dict=tasks.task_dict, limit=cfg.limit, log_samples=False,
                                 bootstrap_iters=1000) or {}
    rows = []
    for item in tasks.loaded:
        rows.extend(result_rows(out.get("results", {}), item, label, out.get("n-samples", {})))
    return rows


@contextmanager
def _offline_if(offline: bool) -> Iterator[None]:
    from .offline import datasets_offline

    with datasets_offline(offline):
        yield


def differences(frame: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Wide table: one row per (task, language, metric), one value column per model,
    and ``Δ <model>`` = that model minus the first model for every further model, with
    ``Δ <model> stderr`` = sqrt(se² + se_first²) (unpaired: the two runs' standard errors).
    """
    if frame.empty:
        return pd.DataFrame(columns=["task", "language", "metric"])
    models = list(models or dict.fromkeys(frame["model"]))
    keys = ["task", "language", "metric"]
    order = frame[keys].drop_duplicates()
    wide = frame.pivot_table(index=keys, columns="model", values="value", aggfunc="first", sort=False)
    errs = frame.pivot_table(index=keys, columns="model", values="stderr", aggfunc="first", sort=False)
    out = order.set_index(keys)
    for m in models:
        out[m] = wide[m] if m in wide else math.nan
        out[f"{m} stderr"] = errs[m] if m in errs else math.nan
    for m in models[1:]:
        out[f"Δ {m}"] = out[m] - out[models[0]]
        # The scores come from separate runs (lm-eval keeps no per-item scores here), so the standard
        # error of the difference is the unpaired one, sqrt(se_m² + se_first²); NaN when either is unknown.
        out[f"Δ {m} stderr"] = (out[f"{m} stderr"] ** 2 + out[f"{models[0]} stderr"] ** 2) ** 0.5
    return out.reset_index()
