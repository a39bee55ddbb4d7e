"""The settings of ``dftlens neurons`` (:class:`NeuronsConfig`) and ``dftlens steer`` (:class:`SteerConfig`).

The command line is generated from the fields (:func:`dftlens.config_files.setting`). The
LAPE thresholds default to Tang et al.'s (ACL 2024, arXiv 2402.16438; RUCAIBox/
Language-Specific-Neurons ``identify.py``): ``top_rate`` 0.01 (the 1% of neurons with the
lowest entropy), ``filter_rate`` 0.95 and ``activation_bar_ratio`` 0.95 (quantiles of all
activation probabilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config_files import check_fields, setting
from ..data.languages import parse_pair, split_list
from ..errors import DataError, LayerError
from ..layers import parse_layers

# Tang et al.'s languages that the bundled sentences have (their Indonesian is not bundled).
DEFAULT_LANGS = ["en", "zh", "fr", "es", "vi", "ja"]
STEER_METHODS = ("vector", "neurons")


def _langs(value: str | Sequence[str]) -> list[str]:
    return split_list(value) if isinstance(value, str) else [str(v) for v in value]


def _floats(value: str | Sequence) -> list[float]:
    try:
        return [float(v) for v in (split_list(value) if isinstance(value, str) else value)]
    except ValueError:
        raise DataError(f"--strengths must be numbers separated by commas, not {value!r}.") from None


def _show_list(values) -> str:
    return ",".join(str(v) for v in values)


@dataclass
class NeuronsConfig:
    """What ``dftlens neurons`` runs: LAPE statistics, selection and the deactivation experiment."""

    langs: list[str] = setting(default_factory=lambda: list(DEFAULT_LANGS), cli_type=str, parse=_langs,
                               show=_show_list, help="Languages, comma-separated (at least two).")
    sentences: str | None = setting(None, "Parallel sentences: JSONL/CSV or a FLORES directory (default: bundled).")
    heldout: int = setting(16, "Sentences per language held out for the deactivation perplexities (0: no "
                               "deactivation experiment); the rest give the activation statistics.")
    max_sentences: int | None = setting(None, "Sentences per language at most, held-out ones included (0: all).",
                                        none_as=0)
    top_rate: float = setting(0.01, "Share of all neurons kept as lowest-entropy candidates (Tang et al.: 0.01).")
    filter_rate: float = setting(0.95, "A candidate needs some language's activation probability above this "
                                       "quantile of all probabilities (Tang et al.: 0.95).")
    activation_bar_ratio: float = setting(0.95, "A candidate is specific to the languages whose probability is "
                                                "above this quantile (Tang et al.: 0.95).")
    batch_size: int = setting(16, "Sentences per forward pass.")
    max_length: int = setting(128, "Tokens per sentence at most (longer ones are cut).")
    seed: int = setting(0, "Seed of the held-out split and the random-neuron control.")

    def __post_init__(self) -> None:
        """Finite numbers and choices, from the fields (:func:`~dftlens.config_files.check_fields`)."""
        check_fields(self)

    def check(self) -> None:
        """DataError (one sentence) for settings that cannot work; the model is not needed."""
        if len(self.langs) < 2 or len(set(self.langs)) != len(self.langs):
            raise DataError(f"--langs needs at least two different languages, not {','.join(self.langs) or 'none'}.")
        for name in ("top_rate", "filter_rate", "activation_bar_ratio"):
            if not 0 < getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be between 0 and 1, not {getattr(self, name)}.")
        if (self.max_sentences or 0) < 0 or self.heldout < 0 or self.batch_size < 1 or self.max_length < 2:
            raise DataError("--max-sentences and --heldout must be at least 0, --batch-size at least 1 and "
                            "--max-length at least 2.")

    def split(self, n_sentences: int) -> int:
        """The number of sentences for the statistics; DataError if fewer than 2 would be left."""
        if n_sentences - self.heldout < 2:
            raise DataError(f"The sentences have {n_sentences} rows; holding out {self.heldout} leaves fewer than "
                            "2 for the activation statistics (lower --heldout or give more sentences).")
        return n_sentences - self.heldout


@dataclass
class SteerConfig:
    """What ``dftlens steer`` runs: language steering on word-translation prompts."""

    source: tuple[str, str] = setting(("fr", "zh"), "The prompts' pair input:output, e.g. fr:zh.", flag="--from",
                                      cli_type=str, parse=parse_pair, show=":".join)
    target: str = setting("ja", "The language to steer the answer into.", flag="--to")
    method: str = setting("vector", "vector: add the mean difference of the two languages' sentence residuals; "
                                    "neurons: set the target language's neurons to their mean active value.",
                          choices=STEER_METHODS)
    layers: list[int] | None = setting(None, "Layers to steer, e.g. 0,4-8 (default: all).", cli_type=str,
                                       parse=parse_layers, show=_show_list)
    strengths: list[float] = setting(default_factory=lambda: [1.0, 4.0], cli_type=str, parse=_floats,
                                     show=_show_list, help="Scales of the direction (vector) or of the mean active "
                                                           "values (neurons), comma-separated.")
    words: str | None = setting(None, "Parallel word file (JSONL/CSV); default: bundled.")
    sentences: str | None = setting(None, "Parallel sentences for the directions and neuron statistics "
                                          "(default: bundled).")
    max_sentences: int | None = setting(None, "Sentences per language for the directions and neuron statistics "
                                              "(0: all).", none_as=0)
    neuron_langs: list[str] = setting(default_factory=lambda: list(DEFAULT_LANGS), cli_type=str, parse=_langs,
                                      show=_show_list, help="--method neurons: languages of the LAPE statistics "
                                                            "(the two steered languages are added).")
    n_prompts: int = setting(32, "Translation prompts at most.")
    batch_size: int = setting(16, "Prompts per forward pass.")
    seed: int = setting(0, "Seed for the demonstrations.")

    def __post_init__(self) -> None:
        """Finite numbers (``--strengths inf`` is refused) and choices, from the fields (:func:`check_fields`)."""
        check_fields(self)

    def languages(self) -> list[str]:
        """English, the prompts' pair and the target (the word file needs them all)."""
        return sorted({"en", *self.source, self.target})

    def check(self, n_layers: int | None = None) -> None:
        """DataError/LayerError (one sentence) for a pair, target, layer or count that cannot work."""
        if self.source[1] == self.target:
            raise DataError(f"--to {self.target} is already the prompts' output language; steer to another one.")
        if self.n_prompts < 1 or self.batch_size < 1 or not self.strengths:
            raise DataError("--n-prompts and --batch-size must be at least 1, and --strengths non-empty.")
        for layer in (self.layers or []) if n_layers is not None else []:
            if not 0 <= layer < n_layers:
                raise LayerError(f"Layer {layer} is out of range: the model has blocks 0..{n_layers - 1}.")


__all__ = ["NeuronsConfig", "SteerConfig", "DEFAULT_LANGS", "STEER_METHODS"]
