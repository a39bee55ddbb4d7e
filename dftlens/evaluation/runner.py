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
from typing import Callable, Iterable, Iterator, Sequence

import pandas as pd

from ..errors import DataError, DftlensError
from ..data.languages import split_list
from .benchmarks import DEFAULT_LANGS
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


def evaluate_models(
    models: Sequence[str | object],
    tasks: Iterable[str] = ("shipped",),
    langs: Iterable[str] = DEFAULT_LANGS,
    *,
    limit: int | None = None,
    batch_size: int = 16,
    allow_download: bool = False,
    mkqa_file: str | Path | None = None,
    threads: int | None = None,
    max_gen_toks: int | None = None,
    log: Callable[[str], None] | None = None,
    model_loader: Callable[[str], object] | None = None,
    load_options: dict | None = None,
) -> EvalRun:
    """Evaluate ``models`` zero-shot on ``tasks`` x ``langs``; see :class:`EvalRun`.

    ``models`` are names for :func:`dftlens.load_model` (alias, Hugging Face id,
    local checkpoint, .gguf) or already loaded :class:`~dftlens.LensModel` objects
    (labelled by their ``name``); the first one is the reference for differences.

    ``tasks`` are suite names ("shipped", "paper", "paper-qa",
    "paper-understanding", "all"), benchmark names (``benchmarks.BENCHMARKS``) or raw
    lm-eval task names. ``limit`` caps the documents per task (quick runs).
    Benchmarks without data on this machine are skipped with a note.
    ``load_options`` (dtype, device, device_map) go to :func:`dftlens.load_model`,
    which loads each model without an engine: evaluation needs only the plain
    Hugging Face model. Raises NonFiniteError when a forward pass's logits hold NaN or
    inf (naming the first block whose output does; :func:`dftlens.numerics.guard_forward`).
    """
    from lm_eval import evaluator

    from ..numerics import guard_forward
    from .harness import DftlensHFLM

    say = log or (lambda message: None)
    models = [models] if isinstance(models, str) else list(models)
    tasks, langs = split_list(tasks), split_list(langs)
    if not models:
        raise DftlensError("No model given; pass --model (repeat it to compare checkpoints).")
    if limit is not None and limit < 1:
        raise DftlensError(f"--limit must be at least 1, not {limit}.")
    if batch_size < 1:
        raise DftlensError(f"--batch-size must be at least 1, not {batch_size}.")
    names = [m if isinstance(m, str) else str(getattr(m, "name", "model")) for m in models]
    if model_loader is None:
        from dftlens import load_model
        from dftlens.models import resolve

        from dftlens.models.loading import check_remote_code

        options = dict(load_options or {})
        for m in models:  # an unavailable model (or one shipping code) fails now, not after the others ran
            if isinstance(m, str):
                check_remote_code(resolve(m).path, bool(options.get("trust_remote_code")))

        model_loader = lambda name: load_model(name, backend=None, **options)  # noqa: E731

    start = time.perf_counter()
    planned, skipped = plan(tasks, langs, mkqa_file=mkqa_file)
    with quiet_lm_eval():
        manager = task_manager_for(planned)
    task_dict, loaded, missing = load_tasks(planned, manager, offline=not allow_download)
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
    settings = {"tasks": list(tasks), "langs": list(langs), "limit": limit, "batch_size": batch_size,
                "offline": not allow_download, "threads": threads, "zero_shot": True}
    labels = _labels(names)

    rows: list[dict] = []
    model_seconds: dict[str, float] = {}
    with torch_threads(threads):
        for model, label in zip(models, labels):
            t0 = time.perf_counter()
            if isinstance(model, str):
                say(f"loading {model}")
                lens_model = model_loader(model)
            else:
                lens_model = model
            lm = DftlensHFLM(lens_model.hf_model, lens_model.tokenizer, batch_size=batch_size,
                             max_gen_toks=max_gen_toks)
            say(f"evaluating {label} on {len(loaded)} task(s)" + (f", {limit} documents each" if limit else ""))
            layers_path = getattr(getattr(lens_model, "arch", None), "layers_path", None)
            with quiet_lm_eval(), _offline_if(not allow_download), \
                    guard_forward(lens_model.hf_model, layers_path, label):
                out = evaluator.evaluate(lm=lm, task_dict=task_dict, limit=limit, log_samples=False,
                                         bootstrap_iters=1000)
            results = (out or {}).get("results", {})
            n_samples = (out or {}).get("n-samples", {})
            for item in loaded:
                rows.extend(result_rows(results, item, label, n_samples))
            del lm, lens_model, out
            gc.collect()
            model_seconds[label] = time.perf_counter() - t0
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return EvalRun(frame, labels, skipped, notes, time.perf_counter() - start, model_seconds, settings)


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
