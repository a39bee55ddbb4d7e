"""Task configs for lm-eval: dftlens's shipped YAML files, MKQA from a local file, XQuAD rescored.

The shipped task files (``tasks/*.yaml``) work on their own with
``lm_eval --include_path <tasks dir>``; :func:`shipped_task_config` loads one as a
dict, checks its data files exist and points MKQA at a user's copy of the data.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .task_table import TASKS_DIR


def load_task_yaml(path: str | Path, resolve_functions: bool, _seen: frozenset = frozenset()) -> dict:
    """An lm-eval task file as a dict, read as lm-eval 0.4.13 reads it (plain PyYAML; lm-eval has no public loader).

    ``!function module.name`` becomes the function (``resolve_functions``: a ``module.py`` next
    to the file first, else an importable module), or without ``resolve_functions`` the text
    ``<file's folder>/module.name``; ``include:`` files (relative to the file) are read first and
    the file's own keys win, ``task_list`` not inherited. Raises ValueError for an include cycle
    or a file that is not a mapping.
    """
    import yaml

    path = Path(path).expanduser().resolve()
    if path in _seen:
        raise ValueError(f"Include cycle at {path}")

    class TaskLoader(yaml.SafeLoader):
        """PyYAML's safe loader plus lm-eval's ``!function`` tag."""

    def function(loader: yaml.SafeLoader, node: yaml.Node):
        spec = loader.construct_scalar(node)
        return _import_function(spec, path.parent) if resolve_functions else str(path.parent / spec)

    TaskLoader.add_constructor("!function", function)
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=TaskLoader)  # noqa: S506 (a safe loader)
    if not isinstance(cfg, dict):
        raise ValueError(f"Expected YAML dict from {path}, got {type(cfg).__name__}")
    if "include" not in cfg:
        return cfg
    includes = cfg.pop("include")
    merged: dict = {}
    for include in includes if isinstance(includes, list) else [includes]:
        included = load_task_yaml(path.parent / include, resolve_functions, _seen | {path})
        included.pop("task_list", None)  # it lists the tasks of the included file only
        merged.update(included)
    return {**merged, **cfg}


def _import_function(spec: str, folder: Path):
    """The function ``spec`` (``module.name``) names: from ``folder/module.py`` if there, else imported."""
    import importlib
    import importlib.util

    module_name, _, name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"Invalid function reference {spec!r}: no module path (from YAML in {folder})")
    local = (folder / f"{module_name.replace('.', '/')}.py").resolve()
    if local.is_file():
        loader_spec = importlib.util.spec_from_file_location(str(local.with_suffix("")), local)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, name)


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
    cfg = load_task_yaml(path, resolve_functions=True)
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
    cfg = load_task_yaml(entry.yaml_path, resolve_functions=False)
    cfg["process_results"] = make_qa_process_results(lang)
    return cfg
