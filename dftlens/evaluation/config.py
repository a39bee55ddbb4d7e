"""The settings of one ``dftlens eval`` run: a dataclass the CLI is generated from.

Each field carries its command-line help (:func:`dftlens.config_files.setting`);
``dftlens eval --config run_config.yaml`` fills it from a file, and every run writes
the values it used to ``<out>/run_config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config_files import setting
from ..errors import DftlensError
from ..models.aliases import EMBEDDED
from ..models.load_settings import LoadSettings
from .task_table import DEFAULT_LANGS

TASKS_HELP = (
    "Suites (shipped, paper, paper-qa, paper-understanding, all), benchmarks (dftlens_mcqa, dftlens_qa, "
    "xquad, mlqa, mkqa, truthfulqa, xnli, xcopa, xstorycloze, mmlu) or any lm-eval task name. "
    "Repeat or separate with commas."
)


@dataclass
class EvalConfig(LoadSettings):
    """Models x tasks x languages, zero-shot, on lm-evaluation-harness (see :func:`.runner.evaluate_models`).

    ``device``, ``dtype``, ``device_map``: how each model loads (:class:`~dftlens.models.load_settings.LoadSettings`).
    """

    models: list[str] = setting(
        default_factory=lambda: [EMBEDDED], flag="--model", short=("-m",), repeat=True,
        help="Alias, Hugging Face id, local checkpoint or .gguf; repeat (or use commas) to compare models side "
             "by side, the first one being the reference.")
    tasks: list[str] = setting(default_factory=lambda: ["shipped"], help=TASKS_HELP, short=("-t",), repeat=True)
    langs: list[str] = setting(default_factory=lambda: list(DEFAULT_LANGS), short=("-l",), repeat=True,
                               help="Language codes (ISO 639-1); repeat or use commas.")
    limit: int | None = setting(None, "At most N documents per task (quick runs).")
    batch_size: int = setting(16, "Sequences per forward pass (and per generation batch).")
    allow_download: bool = setting(False, "Let lm-eval download benchmark data (default: offline, fail fast).",
                                   flag="--allow-download")
    mkqa_file: str | None = setting(None, "mkqa.jsonl(.gz) from github.com/apple/ml-mkqa.")
    threads: int = setting(0, "CPU threads for torch (0: the cores not already busy).")

    def __post_init__(self) -> None:
        """Load settings (:class:`LoadSettings`), then counts that cannot work, before any task or model loads."""
        super().__post_init__()
        if self.threads < 0:
            raise DftlensError(f"--threads must be 0 (automatic) or a positive number of threads, not {self.threads}.")
        if self.batch_size < 1:
            raise DftlensError(f"--batch-size must be at least 1, not {self.batch_size}.")
        if self.limit is not None and self.limit < 1:
            raise DftlensError(f"--limit must be at least 1, not {self.limit}.")
