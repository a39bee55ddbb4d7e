"""``dftlens steer``: switch the answer language of word-translation prompts, layer by layer.

Prompts: the few-shot word translation prompts of ``dftlens patch`` (Wendler et al. 2024,
Dumas et al. 2025: 5 demonstrations, ``Français: "eau" - 中文: "``) for the pair ``--from
X:Y``; the answer should switch from Y (old) to ``--to`` Z (new). For each layer ``l`` and
strength ``s`` one edit, at every position of the prompt:

- ``vector``: add ``s * (mean_Z - mean_Y)`` to ``blocks.{l}.hook_resid_post``, where ``mean_*``
  is the mean over the parallel sentences of each sentence's mean-pooled ``resid_post`` at
  ``l`` (BOS and pads excluded): the mean-difference language vector (as in Schut et al.
  2025, arXiv 2502.15603, and Dumas et al.'s mean latents);
- ``neurons``: set Z's language-specific neurons of layer ``l`` (Tang et al. 2024, LAPE, see
  :mod:`.lape`) at ``blocks.{l}.mlp.hook_post`` to ``s`` times their mean value over Z's
  tokens where they are active (Tang et al.'s activation experiment).

Read at the last position (the next token starts the answer), per prompt: ``p_new`` / ``p_old``
(probability mass on the concept's token sets in Z / Y, as the probe sums them),
``switched`` (the top-1 token is in the concept's Z set: the answer switched language and kept
the concept), ``kept`` (the top-1 token is in the concept's token set of any of Z, Y, English or
X: the concept survived) and ``p_concept`` (mass on that union). Means with Student-t 95% CIs
over prompts; prompts whose Y and Z token sets overlap (e.g. zh/ja 水) are dropped. The
unsteered prompts are the row ``layer = -1, strength = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..data.parallel import load_sentences, load_words
from ..data.prompts import translation_items
from ..errors import DataError, LayerError
from ..io import write_csv, write_json
from ..output_dirs import results_dir
from ..models import Edit, LensModel
from ..models.hook_points import hook_name
from .neuron_config import NeuronsConfig, SteerConfig
from .stats import summarise
from .token_sets import TokenSets

OUTPUTS = ["steering.csv", "steering_items.csv", "report.html", "summary.json"]
METRICS = ["switched", "kept", "p_new", "p_old", "p_concept"]
N_DEMOS = 5  # as dftlens patch


@dataclass
class SteerPrompts:
    """The prompts kept and their token sets (``old``, ``new``, ``concept``: one frozenset per prompt)."""

    ids: list[str]
    texts: list[str]
    old: list[frozenset[int]]
    new: list[frozenset[int]]
    concept: list[frozenset[int]]


def steer_prompts(lm: LensModel, config: SteerConfig) -> SteerPrompts:
    """Translation prompts of ``config.source`` with disjoint, non-empty old and new token sets.

    Raises:
        DataError: a language the words lack, or no prompt left.
    """
    (x, y), z = config.source, config.target
    words = load_words(config.words, config.languages())
    sets = TokenSets(lm.tokenizer)
    rows = {i: r for i, r in zip(words.ids, words.rows)}
    out = SteerPrompts([], [], [], [], [])
    for item in translation_items(words, x, y, n_demos=N_DEMOS, seed=config.seed):
        row = rows[item.item_id]
        old, new = sets.ids(row[y]), sets.ids(row[z])
        if not old or not new or old & new:
            continue
        out.ids.append(item.item_id), out.texts.append(item.prompt), out.old.append(old), out.new.append(new)
        out.concept.append(old | new | sets.ids(row["en"]) | sets.ids(row[x]))
        if len(out.ids) == config.n_prompts:
            break
    if not out.ids:
        raise DataError(f"No word has distinct {y} and {z} answer tokens for this tokenizer; nothing to steer.")
    return out


def language_vectors(lm: LensModel, config: SteerConfig, layers: list[int], progress: bool = True) -> torch.Tensor:
    """``[len(layers), d]``: mean pooled ``resid_post`` of the new language's sentences minus the old one's."""
    from .sentence_reps import sentence_representations

    y, z = config.source[1], config.target
    data = load_sentences(config.sentences, [y, z])
    texts = {lang: column[:config.max_sentences or None] for lang, column in data.by_language([y, z]).items()}
    reps = sentence_representations(lm, texts, layers, batch_size=config.batch_size,
                                    progress=progress).reps  # [2, n, layers, d]
    return torch.from_numpy(reps[1].mean(axis=0) - reps[0].mean(axis=0))


def neuron_values(lm: LensModel, config: SteerConfig, neurons=None,
                  progress: bool = True) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``{layer: (neuron indices, mean active values)}`` of the new language's LAPE neurons.

    ``neurons``: a :class:`~dftlens.analysis.neurons.NeuronsResult` or a ``dftlens neurons``
    output directory; None: computed here on ``config.sentences`` in ``neuron_langs`` plus the
    two steered languages (Tang et al.'s default thresholds, no deactivation experiment).
    """
    from .lape import activation_stats, neuron_sets, select_neurons
    from .neurons import load_split, read_neuron_sets

    z = config.target
    if neurons is not None:
        sets, stats = (neurons.sets(), neurons.stats) if hasattr(neurons, "sets") else read_neuron_sets(neurons)
        if z not in stats.langs:
            raise DataError(f"The neuron statistics have no {z!r}; their languages are {', '.join(stats.langs)}.")
    else:
        langs = list(dict.fromkeys([*config.neuron_langs, config.source[1], z]))
        texts, _ = load_split(NeuronsConfig(langs=langs, sentences=config.sentences, heldout=0,
                                            max_sentences=config.max_sentences))
        stats = activation_stats(lm, texts, config.batch_size, progress=progress)
        sets = neuron_sets(select_neurons(stats.probs), stats.langs)
    k = stats.langs.index(z)
    mean = stats.mean_active
    return {layer: (torch.as_tensor(idx, dtype=torch.long), torch.as_tensor(mean[layer, idx, k], dtype=torch.float32))
            for layer, idx in sets.get(z, {}).items()}


def steering_edit(method: str, layer: int, strength: float, vectors: dict, neurons: dict) -> Edit | None:
    """The one edit of (layer, strength), at every position; None when the layer has no neurons to set."""
    if method == "vector":
        return Edit(hook_name(layer, "resid_post"), strength * vectors[layer], positions=None, mode="add")
    if layer not in neurons:
        return None
    idx, values = neurons[layer]

    def set_neurons(cur: torch.Tensor) -> torch.Tensor:
        new = (strength * values).to(cur.device, cur.dtype).expand(*cur.shape[:-1], len(idx))
        return cur.index_copy(-1, idx.to(cur.device), new.contiguous())

    return Edit(hook_name(layer, "mlp_post"), set_neurons, positions=None)


@torch.no_grad()
def read_prompts(lm: LensModel, prompts: SteerPrompts, edit: Edit | None, batch_size: int) -> pd.DataFrame:
    """One row per prompt: the :data:`METRICS` at the last position, with ``edit`` applied."""
    last = lm.hook_name(lm.n_layers - 1)
    rows = []
    for start in range(0, len(prompts.texts), batch_size):
        batch = lm.tokenize(prompts.texts[start:start + batch_size], padding_side="left")
        resid = lm.capture(batch, [last], positions="last", edits=[edit] if edit else None)[last]
        logp = lm.log_probs(resid).cpu()
        if not torch.isfinite(logp).all():
            raise DataError("The steered model gave non-finite log-probabilities; use smaller --strengths.")
        probs, top = logp.exp(), logp.argmax(-1).tolist()
        for r in range(len(top)):
            p = start + r
            mass = {name: float(probs[r, sorted(getattr(prompts, name)[p])].sum()) for name in ("old", "new", "concept")}
            rows.append(dict(item_id=prompts.ids[p], switched=float(top[r] in prompts.new[p]),
                             kept=float(top[r] in prompts.concept[p]), p_new=mass["new"], p_old=mass["old"],
                             p_concept=mass["concept"]))
    return pd.DataFrame(rows)


def best_layers(table: pd.DataFrame, n: int = 3) -> dict:
    """Where steering works best: the layers of highest switch rate (at each layer's best strength)."""
    steered = table[table["layer"] >= 0]
    if steered.empty:
        return {"best_layers": [], "best": None}
    best = steered.sort_values(["switched", "p_new"], ascending=False, kind="stable")
    per_layer = best.drop_duplicates("layer")
    top = per_layer.iloc[0]
    base = table[table["layer"] < 0]
    return {
        "kind": "language steering",
        "best_layers": [int(x) for x in per_layer["layer"].iloc[:n]],
        "best": {k: (float(top[k]) if k != "layer" else int(top[k]))
                 for k in ("layer", "strength", "switched", "switched_lo", "switched_hi", "kept", "p_new", "p_old")},
        "unsteered_switched": float(base["switched"].iloc[0]) if len(base) else None,
    }


@dataclass
class SteerResult:
    """What :func:`run_steering` measured: ``items`` (one row per prompt, layer and strength),
    ``table`` (means and 95% CIs, ``steering.csv``) and ``summary`` (:func:`best_layers`)."""

    model: str
    n_layers: int
    config: SteerConfig
    items: pd.DataFrame
    table: pd.DataFrame
    summary: dict

    def save(self, out: str | Path, overwrite: bool = False, report: bool = True,
             extra: Callable[[Path], object] | None = None) -> Path:
        """Write :data:`OUTPUTS` and ``run_config.yaml`` (the config) into ``out`` at once.

        ``extra(tmp_dir)`` (the CLI's) may replace ``run_config.yaml`` with every option of the run.
        """
        with results_dir(out, OUTPUTS, overwrite, self.config, "steer", extra) as tmp:  # run_config.yaml, then the results
            write_csv(tmp / "steering_items.csv", self.items)
            write_json(tmp / "summary.json", self.summary)
            if report:
                from ..viz.neuron_figures import write_steering_report

                write_steering_report(tmp / "report.html", self, title=f"dftlens steer: {self.model}")
            write_csv(tmp / "steering.csv", self.table)  # last: its presence means the run completed
        return Path(out).expanduser()


def run_steering(lm: LensModel, config: SteerConfig | None = None, neurons=None,
                 progress: bool = True) -> SteerResult:
    """Steer every (layer, strength) of ``config`` on ``lm`` (see the module docstring).

    ``neurons`` (``method="neurons"``): a ``NeuronsResult`` or a ``dftlens neurons`` output directory
    (default: computed here, see :func:`neuron_values`).

    Raises:
        DataError: a missing language or no usable prompt. LayerError: a layer out of range.
    """
    from tqdm.auto import tqdm

    config = config or SteerConfig()
    config.check(lm.n_layers)
    layers = sorted(set(config.layers)) if config.layers else list(range(lm.n_layers))
    prompts = steer_prompts(lm, config)
    vectors, values = {}, {}
    if config.method == "vector":
        vectors = dict(zip(layers, language_vectors(lm, config, layers, progress)))
    else:
        values = neuron_values(lm, config, neurons, progress)
        if not any(layer in values for layer in layers):
            raise LayerError(f"No {config.target} neurons in the layers asked for; their layers are "
                             f"{sorted(values) or 'none'}.")
    frames = [read_prompts(lm, prompts, None, config.batch_size).assign(layer=-1, strength=0.0)]
    runs = [(layer, s) for layer in layers for s in config.strengths]
    for layer, strength in tqdm(runs, desc="steering", disable=not progress):
        edit = steering_edit(config.method, layer, strength, vectors, values)
        if edit is not None:
            frames.append(read_prompts(lm, prompts, edit, config.batch_size).assign(layer=layer, strength=strength))
    items = pd.concat(frames, ignore_index=True)
    table = summarise(items, ["layer", "strength"], METRICS, bounds={m: (0.0, 1.0) for m in METRICS})
    table.insert(0, "method", config.method)
    return SteerResult(lm.name, lm.n_layers, config, items, table, best_layers(table))


__all__ = ["SteerPrompts", "SteerResult", "run_steering", "steer_prompts", "language_vectors", "neuron_values",
           "steering_edit", "read_prompts", "best_layers", "OUTPUTS", "METRICS"]
