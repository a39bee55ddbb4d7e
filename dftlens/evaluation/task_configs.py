"""Task configs for lm-eval: dftlens's shipped YAML files, MKQA from a local file, XQuAD rescored.

The shipped task files (``tasks/*.yaml``) work on their own with
``lm_eval --include_path <tasks dir>``; :func:`shipped_task_config` loads one as a
dict, checks its data files exist and points MKQA at a user's copy of the data.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .benchmarks import TASKS_DIR


def _load_yaml(path: Path, resolve_functions: bool) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return dict(load_yaml(path, resolve_func=resolve_functions))


def shipped_dataset(data_files: dict[str, str] | None = None, **_metadata):
    """The ``custom_dataset`` of the shipped task files: their JSONL data, found from any directory.

    lm-eval calls it with the task's ``metadata`` and ``dataset_kwargs``; relative
    ``data_files`` are read from the tasks folder (:data:`TASKS_DIR`), not from the
    current directory, so ``lm_eval --include_path <tasks dir>`` works from anywhere.
    Returns a ``datasets.DatasetDict`` with one split per entry of ``data_files``.

    Raises:
        DataError: a data file is missing (a broken install).
    """
    import datasets

    files = {split: (TASKS_DIR / rel).resolve() for split, rel in dict(data_files or {}).items()}
    for file in files.values():
        if not file.is_file():
            raise DataError(f"The shipped data file {file} is missing; reinstall dftlens.")
    return datasets.load_dataset("json", data_files={split: str(file) for split, file in files.items()})


def shipped_task_config(task_name: str, mkqa_file: str | Path | None = None) -> dict:
    """The full config of a dftlens task file as a dict (functions resolved, data paths absolute).

    For MKQA, ``mkqa_file`` (the mkqa.jsonl.gz of github.com/apple/ml-mkqa) replaces
    the Hugging Face dataset. Raises :class:`DataError` when the task file, a shipped
    data file or ``mkqa_file`` does not exist.
    """
    path = TASKS_DIR / f"{task_name}.yaml"
    if not path.is_file():
        raise DataError(f"dftlens has no task file {path.name} (looked in {TASKS_DIR}).")
    cfg = _load_yaml(path, resolve_functions=True)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    if "data_files" in kwargs:  # absolute, so the dict reads the same data wherever it is used
        kwargs["data_files"] = {
            split: str((TASKS_DIR / rel).resolve()) for split, rel in dict(kwargs["data_files"]).items()
        }
        for file in kwargs["data_files"].values():
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
