"""The settings of ``dftlens patch`` (:class:`PatchConfig`) and their parsers and checks.

The command line is generated from the fields (:func:`dftlens.config_files.setting`);
the parsers take the command-line text (``"de:ru>fr:zh"``, ``"0,4-8"``) and the lists a
YAML run config holds alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config_files import check_fields, setting
from ..data.languages import parse_pair, split_list
from ..errors import DataError, LayerError
from ..layers import parse_layers
from .token_sets import TOKEN_SET_KINDS

N_DEMOS = 5  # demonstrations per patching prompt (the paper's num_few_shot)
Experiment = tuple[tuple[str, str], tuple[str, str]]  # (source X:Y, target X':Y')


def parse_experiments(value: str | Sequence) -> list[Experiment]:
    """Concept-patching experiments from ``"de:ru>fr:zh,..."`` or a list of such strings / pairs of pairs.

    Raises DataError for an entry without ``>`` or a pair that is not two different languages.
    """
    entries = split_list(value) if isinstance(value, str) else list(value or [])
    experiments = []
    for entry in entries:
        if isinstance(entry, str):
            source, sep, target = entry.partition(">")
            if not sep:
                raise DataError(f"--pairs entry {entry!r} is not source>target (e.g. de:ru>fr:zh).")
        else:
            source, target = entry
        experiments.append((parse_pair(source), parse_pair(target)))
    return experiments


def format_experiments(experiments: Sequence[Experiment]) -> str:
    """The command-line text of experiments: ``de:ru>fr:zh,...``."""
    return ",".join(f"{':'.join(src)}>{':'.join(tgt)}" for src, tgt in experiments)


@dataclass
class PatchConfig:
    """What ``dftlens patch`` runs. Pairs are (input, output) language codes."""

    # Concept patching: (source X:Y, target X':Y') experiments; Y != Y'. Paper: de:it into fr:zh.
    concept: list[Experiment] = setting(
        default_factory=lambda: [(("de", "ru"), ("fr", "zh"))], flag="--pairs", cli_type=str,
        parse=parse_experiments, show=format_experiments,
        help="Concept patching: source X:Y > target X':Y', comma-separated.")
    mean_sources: list[tuple[str, str]] = setting(
        default_factory=lambda: [("de", "ja"), ("ru", "es"), ("es", "ru"), ("ja", "de")],
        help="Mean-latent patching: the source pairs whose latents are averaged.")
    mean_target: tuple[str, str] | None = setting(
        ("fr", "zh"), "Mean-latent patching target X':Y' ('none' to skip).", cli_type=str, none_as="none",
        parse=parse_pair, show=":".join)
    words: str | None = setting(None, "Parallel words: a JSONL/CSV file, or Wendler et al.'s (data/langs) or Dumas "
                                       "et al.'s (data/<lang>/word_translation.csv) word files; default: bundled.")
    layers: list[int] | None = setting(None, "Layers to patch, e.g. 0,4-8 (default: all).", cli_type=str,
                                       parse=parse_layers, show=lambda v: ",".join(map(str, v)))
    token_sets: str = setting("prefix", "Answer token sets: prefix (Wendler et al.: every single-token prefix, with "
                                        "and without the space marker) or first (Dumas et al.: the tokenizer's first "
                                        "token of the word and of ' word', to reproduce their numbers).",
                              choices=TOKEN_SET_KINDS)
    n_pairs: int = setting(32, "Concept pairs (A, B) per experiment.")
    rows_per_pass: int = setting(72, "Prompt rows (pairs x layers) per forward pass.", flag="--batch-size")
    seed: int = setting(0, "Seed for demonstrations and pair sampling.")

    def __post_init__(self) -> None:
        """Finite numbers and choices (:func:`check_fields`); the rest needs the model (:func:`check_config`)."""
        check_fields(self)

    def languages(self) -> list[str]:
        """Every language code the experiments use, English included, sorted."""
        langs = {"en"} | {lang for exp in self.concept for pair in exp for lang in pair}
        if self.mean_target:
            langs |= set(self.mean_target) | {lang for pair in self.mean_sources for lang in pair}
        return sorted(langs)


def check_words(words) -> None:
    """DataError unless ``words`` (ParallelData) has enough words for a prompt: N_DEMOS demonstrations + the word."""
    if len(words) < N_DEMOS + 1:
        raise DataError(f"{words.source} has {len(words)} words; a patching prompt needs {N_DEMOS + 1} "
                        f"({N_DEMOS} demonstrations and the word asked for).")


def check_config(config: PatchConfig, n_layers: int) -> None:
    """DataError/LayerError (one sentence each) for pairs or layers that cannot work."""
    pairs = [p for exp in config.concept for p in exp] + list(config.mean_sources)
    pairs += [config.mean_target] if config.mean_target else []
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise DataError(f"Pair {':'.join(pair)} has one language; a translation pair needs two different "
                            "languages (input:output, e.g. fr:zh).")
    for src, tgt in config.concept:
        if src[1] == tgt[1]:
            raise DataError(f"Concept patching {':'.join(src)} into {':'.join(tgt)} needs two different output "
                            "languages, or P(A in Y) and P(A in Y') are the same quantity.")
    if config.mean_target and not config.mean_sources:
        raise DataError("Mean-latent patching needs at least one source pair.")
    for layer in config.layers or []:
        if not 0 <= layer < n_layers:
            raise LayerError(f"Layer {layer} is out of range: the model has blocks 0..{n_layers - 1}.")
    if config.n_pairs < 1 or config.rows_per_pass < 1:
        raise DataError("--n-pairs and the rows per pass must be at least 1.")
