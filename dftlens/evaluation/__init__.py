"""Zero-shot multilingual evaluation on lm-evaluation-harness (``dftlens eval``).

- :func:`evaluate_models` (``evaluate_models(cfg, lm=None)`` with an :class:`EvalConfig`)
  runs one or more models (aliases, Hugging Face ids, local checkpoints, or models
  already loaded) side by side and returns an :class:`EvalRun` whose ``frame``
  is the tidy table (model, task, language, metric, value, stderr, ...).
- :data:`BENCHMARKS` / :data:`SUITES` map the DFT paper's benchmarks and
  dftlens's shipped offline tasks to lm-eval task names per language.
- :func:`write_outputs` writes results.csv, report.html and eval.json.
- :mod:`.metrics` holds the QA scoring (MLQA-style F1/EM, per character for
  Chinese and Japanese).

Imports are lazy so that lm-eval task files can import :mod:`.metrics` cheaply.
"""

from __future__ import annotations

_EXPORTS = {
    "evaluate_models": "runner", "EvalConfig": "config", "EvalRun": "runner", "differences": "runner",
    "BENCHMARKS": "task_table", "SUITES": "task_table", "DEFAULT_LANGS": "task_table", "plan": "planning",
    "load_tasks": "task_loading", "summarize_skips": "skips",
    "write_outputs": "outputs", "plain_table": "outputs", "results_table": "outputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
