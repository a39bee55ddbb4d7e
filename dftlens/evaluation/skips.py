"""What was not run and how to get it: the "skipped" lines of ``dftlens eval`` and its report."""

from __future__ import annotations

from typing import Iterable

from .task_table import BENCHMARKS
from .planning import MKQA_FILE_ENV, Skipped


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
