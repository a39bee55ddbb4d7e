"""The benchmark table: which lm-eval task answers which (benchmark, language).

Benchmarks are named as in the DFT paper (XQuAD, MLQA, MKQA, TruthfulQA, XNLI,
XCOPA, XStoryCloze, MMLU) plus dftlens's two shipped offline tasks. Each maps a
language to a task of lm-evaluation-harness 0.4.13 where one exists; dftlens
ships task files for the rest (``tasks/*.yaml``). :data:`SUITES` names groups of
benchmarks (``shipped``, ``paper``, ...). Planning a run from these names is
:mod:`.planning`; loading the tasks is :mod:`.task_loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SHIPPED_LANGS = ("en", "zh", "fr", "vi", "ar")
DEFAULT_LANGS = ("vi", "ar", "zh", "en")


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
