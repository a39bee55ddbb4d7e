"""Which lm-eval task answers which (benchmark, language), and loading those tasks offline.

Benchmarks are named as in the DFT paper (XQuAD, MLQA, MKQA, TruthfulQA, XNLI,
XCOPA, XStoryCloze, MMLU) plus dftlens's two shipped offline tasks. Each maps a
language to a task of lm-evaluation-harness 0.4.13 where one exists; dftlens
ships task files for the rest (``tasks/*.yaml``). See :data:`BENCHMARKS` and
``dftlens eval --help``.

Loading is offline by default (``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``):
a benchmark whose data is not on this machine fails at once instead of waiting on
network time-outs, and becomes a :class:`Skipped` note saying how to get the data;
the rest of the run goes on.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import DataError, DftlensError

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SHIPPED_LANGS = ("en", "zh", "fr", "vi", "ar")
DEFAULT_LANGS = ("vi", "ar", "zh", "en")
DATASETS_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE")
MKQA_FILE_ENV = "DFTLENS_MKQA_FILE"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the suite: how a language maps to an lm-eval task."""

    name: str  # the ``task`` column of results.csv
    title: str
    kind: str  # "shipped", "qa" or "understanding"
    metrics: tuple[str, ...]  # lm-eval metric names reported (others are dropped)
    task: Callable[[str], str | None]  # language -> lm-eval task or group name (None: not covered)
    dataset: Callable[[str], tuple[str, str | None]]  # language -> (HF dataset id, config), for messages
    covers: str  # the languages the benchmark has, for the "skipped" note
    lm_eval_dirs: tuple[str, ...] = ()  # subfolders of lm_eval/tasks to index (fast start)
    rename: dict[str, str] = field(default_factory=dict)  # lm-eval metric name -> reported name
    note: Callable[[str], str | None] = lambda lang: None


def _when(langs: Iterable[str], fmt: str) -> Callable[[str], str | None]:
    langs = tuple(langs)
    return lambda lang: fmt.format(lang=lang) if lang in langs else None


_XQUAD = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
_MLQA = ("ar", "de", "en", "es", "hi", "vi", "zh")
_XNLI = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
_XCOPA = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
_XSTORY = ("ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")
# okapi (Lai et al. 2023) machine-translated MMLU and TruthfulQA, as packaged in lm-eval
_OKAPI = ("ar", "bn", "ca", "da", "de", "es", "eu", "fr", "gu", "hi", "hr", "hu", "hy", "id", "is", "it",
          "kn", "ml", "mr", "nb", "ne", "nl", "pt", "ro", "ru", "sk", "sr", "sv", "ta", "te", "uk", "vi", "zh")
_MKQA_YAML = SHIPPED_LANGS

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "dftlens_mcqa", "dftlens mini MCQA (shipped)", "shipped", ("acc",),
            _when(SHIPPED_LANGS, "dftlens_mcqa_{lang}"),
            lambda lang: (f"dftlens/evaluation/tasks/data/mini_mcqa_{lang}.jsonl", None),
            ", ".join(SHIPPED_LANGS),
        ),
        Benchmark(
            "dftlens_qa", "dftlens mini QA (shipped)", "shipped", ("f1", "exact_match"),
            _when(SHIPPED_LANGS, "dftlens_qa_{lang}"),
            lambda lang: (f"dftlens/evaluation/tasks/data/mini_qa_{lang}.jsonl", None),
            ", ".join(SHIPPED_LANGS),
        ),
        Benchmark(
            "xquad", "XQuAD", "qa", ("f1", "exact_match"), _when(_XQUAD, "xquad_{lang}"),
            lambda lang: ("google/xquad", f"xquad.{lang}"), ", ".join(_XQUAD), ("xquad",),
            note=lambda lang: "scored with dftlens's MLQA-style F1/EM"
            + (" (per character for zh)" if lang == "zh" else "")
            + "; lm-eval's xquad scorer needs transformers.data.metrics, gone in transformers 5",
        ),
        Benchmark(
            "mlqa", "MLQA", "qa", ("f1", "exact_match"), _when(_MLQA, "mlqa_{lang}_{lang}"),
            lambda lang: ("facebook/mlqa", f"mlqa.{lang}.{lang}"), ", ".join(_MLQA), ("mlqa",),
        ),
        Benchmark(
            "mkqa", "MKQA", "qa", ("f1", "exact_match"), _when(_MKQA_YAML, "dftlens_mkqa_{lang}"),
            lambda lang: ("apple/mkqa", None), ", ".join(_MKQA_YAML) + " (dftlens task files)",
        ),
        Benchmark(
            "truthfulqa", "TruthfulQA", "qa", ("acc",),
            lambda lang: "truthfulqa_mc1" if lang == "en" else (f"truthfulqa_{lang}_mc1" if lang in _OKAPI else None),
            lambda lang: ("truthfulqa/truthful_qa", "multiple_choice") if lang == "en"
            else ("alexandrainst/m_truthfulqa", lang),
            "en + okapi translations (" + ", ".join(_OKAPI) + ")",
            ("truthfulqa", "okapi/truthfulqa_multilingual"), rename={"acc": "mc1"},
            note=lambda lang: None if lang == "en" else "okapi machine-translated TruthfulQA (val split)",
        ),
        Benchmark(
            "xnli", "XNLI", "understanding", ("acc",), _when(_XNLI, "xnli_{lang}"),
            lambda lang: ("facebook/xnli", lang), ", ".join(_XNLI), ("xnli",),
        ),
        Benchmark(
            "xcopa", "XCOPA", "understanding", ("acc",),
            lambda lang: "copa" if lang == "en" else (f"xcopa_{lang}" if lang in _XCOPA else None),
            lambda lang: ("aps/super_glue", "copa") if lang == "en" else ("cambridgeltl/xcopa", lang),
            ", ".join(_XCOPA) + "; en uses COPA (SuperGLUE), which XCOPA translates",
            ("xcopa", "super_glue/copa"),
            note=lambda lang: "XCOPA has no English split: en is COPA (SuperGLUE)" if lang == "en" else None,
        ),
        Benchmark(
            "xstorycloze", "XStoryCloze", "understanding", ("acc",), _when(_XSTORY, "xstorycloze_{lang}"),
            lambda lang: ("juletxara/xstory_cloze", lang), ", ".join(_XSTORY), ("xstorycloze",),
        ),
        Benchmark(
            "mmlu", "MMLU", "understanding", ("acc",),
            lambda lang: "mmlu" if lang == "en" else (f"m_mmlu_{lang}" if lang in _OKAPI else None),
            lambda lang: ("cais/mmlu", "all") if lang == "en" else ("alexandrainst/m_mmlu", lang),
            "en + okapi translations (" + ", ".join(_OKAPI) + ")",
            ("mmlu/default", "okapi/mmlu_multilingual"),
            note=lambda lang: None if lang == "en" else "okapi machine-translated MMLU",
        ),
    ]
}

SUITES: dict[str, tuple[str, ...]] = {
    "shipped": ("dftlens_mcqa", "dftlens_qa"),
    "paper": ("xquad", "mlqa", "mkqa", "truthfulqa", "xnli", "xcopa", "xstorycloze", "mmlu"),
    "paper-qa": ("xquad", "mlqa", "mkqa", "truthfulqa"),
    "paper-understanding": ("xnli", "xcopa", "xstorycloze", "mmlu"),
}
SUITES["all"] = SUITES["shipped"] + SUITES["paper"]
ALIASES = {"mini_mcqa": "dftlens_mcqa", "mcqa": "dftlens_mcqa", "mini_qa": "dftlens_qa"}


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


# --------------------------------------------------------------------------- parsing


def split_names(values: Iterable[str] | str | None) -> list[str]:
    """Repeatable and/or comma-separated option values -> ordered unique list."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    values = list(values)
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


_LANG = re.compile(r"^[a-z]{2,3}([_-][a-z]{2,4})?$")


def check_languages(langs: Iterable[str]) -> list[str]:
    langs = [lang.lower().replace("-", "_") for lang in split_names(langs)]
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
    for name in split_names(names):
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


# --------------------------------------------------------------------------- configs


def _load_yaml(path: Path, resolve_functions: bool) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return dict(load_yaml(path, resolve_func=resolve_functions))


def shipped_task_config(task_name: str, mkqa_file: str | Path | None = None) -> dict:
    """The full config of a dftlens task file, with data paths made absolute."""
    path = TASKS_DIR / f"{task_name}.yaml"
    if not path.is_file():
        raise DataError(f"dftlens has no task file {path.name} (looked in {TASKS_DIR}).")
    cfg = _load_yaml(path, resolve_functions=True)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = {
            split: str((TASKS_DIR / rel).resolve()) for split, rel in dict(kwargs["data_files"]).items()
        }
        for split, file in kwargs["data_files"].items():
            if not Path(file).is_file():
                raise DataError(f"The shipped data file {file} for {task_name} is missing; reinstall dftlens.")
    if mkqa_file:
        file = Path(mkqa_file).expanduser()
        if not file.is_file():
            raise DataError(f"MKQA file {file} does not exist; download mkqa.jsonl.gz from "
                            "https://github.com/apple/ml-mkqa and pass its path.")
        cfg["dataset_path"] = "json"
        cfg["dataset_name"] = None
        kwargs["data_files"] = {cfg.get("test_split") or "train": str(file.resolve())}
    if kwargs:
        cfg["dataset_kwargs"] = kwargs
    return cfg


def xquad_task_config(task_manager, task_name: str, lang: str) -> dict:
    """lm-eval's XQuAD config, scored with dftlens's multilingual F1/EM."""
    from .metrics import make_qa_process_results

    entry = task_manager.task_index[task_name]
    cfg = _load_yaml(Path(entry.yaml_path), resolve_functions=False)
    cfg["process_results"] = make_qa_process_results(lang)
    return cfg


# --------------------------------------------------------------------------- loading


@contextmanager
def datasets_offline(offline: bool = True) -> Iterator[None]:
    """Make ``datasets`` and ``huggingface_hub`` fail fast instead of reaching the network."""
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in DATASETS_OFFLINE_ENV}
    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    for key in DATASETS_OFFLINE_ENV:
        os.environ[key] = "1"
    datasets.config.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def quiet_lm_eval(level: int = logging.ERROR) -> Iterator[None]:
    """lm-eval logs every default it fills in; keep the console to what matters."""
    names = ("lm_eval", "lm-eval", "datasets")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(level)
    try:
        yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


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


def how_to_get(benchmark: str, dataset: tuple[str, str | None] | None, configs: Iterable[str | None] = ()) -> str:
    """One or two sentences: what is missing and how to get it onto this machine."""
    if benchmark == "mkqa":
        return ("MKQA's data is not on this machine (its Hugging Face copy is a loading script that "
                "datasets >= 4 cannot run): download mkqa.jsonl.gz from https://github.com/apple/ml-mkqa "
                f"(dataset/mkqa.jsonl.gz) and pass --mkqa-file PATH (or set {MKQA_FILE_ENV}).")
    dataset_id, config = dataset or (None, None)
    if dataset_id is None:
        return ("its data is not on this machine; download it where the Hugging Face Hub is reachable "
                "(e.g. run it there with --allow-download), copy ~/.cache/huggingface here and set HF_HOME "
                "to the copy.")
    configs = [c for c in (list(configs) or [config]) if c]
    if not configs:
        call, shown = f"datasets.load_dataset('{dataset_id}')", dataset_id
    elif len(configs) == 1:
        call, shown = f"datasets.load_dataset('{dataset_id}', '{configs[0]}')", f"{dataset_id} ({configs[0]})"
    else:
        call = f"[datasets.load_dataset('{dataset_id}', c) for c in {configs!r}]"
        shown = f"{dataset_id} ({', '.join(configs)})"
    return (f"dataset {shown} is not on this machine. On a machine with access run "
            f"`python -c \"import datasets; {call}\"`, copy its ~/.cache/huggingface here and set HF_HOME "
            "to the copy (or HF_DATASETS_CACHE to its datasets/ folder), or rerun with --allow-download "
            "where the Hub is reachable.")


def summarize_skips(skipped: Iterable[Skipped]) -> list[str]:
    """One line per benchmark and cause, instead of one per language."""
    groups: dict[tuple, list[Skipped]] = {}
    for s in skipped:
        key = (s.benchmark, s.kind, s.dataset[0] if s.kind == "missing-data" and s.dataset else s.reason)
        groups.setdefault(key, []).append(s)
    lines = []
    for (benchmark, kind, _), items in groups.items():
        langs = ", ".join(s.language for s in items if s.language)
        where = f"{benchmark} ({langs})" if langs else benchmark
        if kind == "missing-data":
            configs = [s.dataset[1] for s in items if s.dataset]
            lines.append(f"{where}: " + how_to_get(benchmark, items[0].dataset, configs) + " Skipped.")
        elif kind == "no-language":
            bench = BENCHMARKS.get(benchmark)
            title = bench.title if bench else benchmark
            covers = f" (it covers {bench.covers})" if bench else ""
            lines.append(f"{where}: {title} has no data in {'this language' if len(items) == 1 else 'these languages'}"
                         f"{covers}; skipped.")
        else:
            lines.extend(str(s) for s in items)
    return lines


_MISSING_DATA = ("offline", "couldn't reach", "couldn't find", "doesn't exist", "does not exist",
                 "not found", "no such file", "connection", "cannot find", "localentrynotfound")


def is_missing_data(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, FileNotFoundError)):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _MISSING_DATA)


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
