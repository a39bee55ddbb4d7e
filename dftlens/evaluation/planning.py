"""Planning an evaluation: suite, benchmark and task names plus languages -> lm-eval tasks.

:func:`plan` expands suites (:data:`~.task_table.SUITES`), maps each (benchmark,
language) to an lm-eval task through :data:`~.task_table.BENCHMARKS`, and returns
the :class:`PlannedTask` list plus a :class:`Skipped` note for every cell the
benchmark does not cover. Nothing is loaded here (that is :mod:`.task_loading`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..data.languages import split_list
from ..errors import DftlensError
from .task_table import ALIASES, BENCHMARKS, SUITES
from .task_configs import shipped_task_config

MKQA_FILE_ENV = "DFTLENS_MKQA_FILE"


@dataclass
class PlannedTask:
    """One (benchmark, language) cell and the lm-eval task that fills it."""

    benchmark: str
    language: str
    task_name: str
    spec: str | dict  # what TaskManager.load gets: a registered name or a full config dict
    metrics: tuple[str, ...] | None = None  # None: report every metric the task returns
    rename: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    shipped: bool = False
    dataset: tuple[str, str | None] | None = None
    members: list[str] = field(default_factory=list)  # the leaf lm-eval tasks it loaded


@dataclass
class Skipped:
    """A (benchmark, language) cell that was not run, and why (one or two sentences)."""

    benchmark: str
    language: str
    reason: str
    task_name: str | None = None
    kind: str = "error"  # "no-language", "missing-data", "no-task" or "error"
    dataset: tuple[str, str | None] | None = None

    def __str__(self) -> str:
        where = f"{self.benchmark} ({self.language})" if self.language else self.benchmark
        return f"{where}: {self.reason}"


_LANG = re.compile(r"^[a-z]{2,3}([_-][a-z]{2,4})?$")


def check_languages(langs: Iterable[str]) -> list[str]:
    """Language codes, lower-cased (``pt-BR`` -> ``pt_br``); DftlensError for a non-code or none at all."""
    langs = [lang.lower().replace("-", "_") for lang in split_list(langs)]
    bad = [lang for lang in langs if not _LANG.match(lang)]
    if bad:
        raise DftlensError(
            f"Not a language code: {', '.join(bad)}. Use ISO 639-1 codes such as vi, ar, zh, en "
            "(repeat --langs or separate with commas)."
        )
    if not langs:
        raise DftlensError("No language given; pass --langs, e.g. --langs vi,ar,zh,en.")
    return langs


def expand_tasks(names: Iterable[str]) -> list[str]:
    """Suite names -> benchmark names; anything else is kept as an lm-eval task name."""
    out: list[str] = []
    for name in split_list(names):
        key = ALIASES.get(name.lower(), name.lower())
        members = SUITES.get(key, (key,) if key in BENCHMARKS else (name,))
        out.extend(m for m in members if m not in out)
    if not out:
        raise DftlensError("No task given; pass --tasks, e.g. --tasks shipped or --tasks xnli,xcopa.")
    return out


def _guess_language(task_name: str, langs: Iterable[str]) -> str:
    for lang in langs:
        if re.search(rf"(^|_){re.escape(lang)}($|_)", task_name):
            return lang
    return ""


def plan(tasks: Iterable[str], langs: Iterable[str], mkqa_file: str | Path | None = None
         ) -> tuple[list[PlannedTask], list[Skipped]]:
    """Turn benchmark/suite/task names and languages into lm-eval tasks to load, and skips."""
    langs = check_languages(langs)
    mkqa_file = mkqa_file or os.environ.get(MKQA_FILE_ENV) or None
    planned: list[PlannedTask] = []
    skipped: list[Skipped] = []
    for name in expand_tasks(tasks):
        bench = BENCHMARKS.get(name)
        if bench is None:  # a raw lm-eval task, group or tag name, run as it is
            planned.append(PlannedTask(name, _guess_language(name, langs), name, name))
            continue
        for lang in langs:
            task_name = bench.task(lang)
            if task_name is None:
                skipped.append(Skipped(bench.name, lang, f"{bench.title} has no {lang} data "
                                       f"(it covers {bench.covers}); skipped.", kind="no-language"))
                continue
            item = PlannedTask(bench.name, lang, task_name, task_name, bench.metrics, dict(bench.rename),
                               bench.note(lang), shipped=bench.kind == "shipped", dataset=bench.dataset(lang))
            if bench.kind == "shipped":
                item.spec = shipped_task_config(task_name)
            elif bench.name == "mkqa":
                item.spec = shipped_task_config(task_name, mkqa_file=mkqa_file)
            planned.append(item)
    return planned, skipped
