"""Per-layer linear probes on mean-pooled sentence residuals (``probes.csv``).

Two kinds of evidence, both per block (``layer`` is the 0-based block index, the
representation is ``blocks.{layer}.hook_resid_post``):

* **Language identity** (``lang_id_all``, ``lang_id_latin``): a standardised,
  L2-regularised multinomial logistic regression predicts the language of a
  sentence representation. Train/test splits are grouped by sentence id (all
  translations of one sentence fall on the same side), 5 folds; the reported
  accuracy pools the out-of-fold predictions (= the size-weighted mean over the
  folds). Next to it: the majority-class baseline, a control task (see
  :func:`control_labels`) run through the identical probe and folds, and
  selectivity = accuracy - control accuracy (Hewitt and Liang 2019). Language is
  trivially decodable from script at every layer, so ``lang_id_latin`` repeats
  the probe on the Latin-script languages only (en, fr, de, es, vi in the
  bundled set), where it has to read more than the alphabet.
* **Cross-lingual alignment** (``retrieval``): for a language pair, each
  sentence retrieves its translation among all ``n`` candidates of the other
  language by cosine similarity; accuracy averages both directions; chance is
  ``1/n``. Each language's vectors are mean-centred first (its mean over the
  sentences is subtracted), the standard way to remove the language-specific
  offset that otherwise dominates the cosine; the un-centred accuracy and the
  cosine margin (mean cosine of true pairs minus mean cosine of non-pairs) are
  reported too.

A probe shows that information is *decodable*, not that the model uses it:
compare selectivity across layers, not raw accuracy.

Uncertainty: 95% percentile bootstrap intervals over sentence ids (clusters: all
languages of a resampled sentence come along), 200 resamples with a fixed seed.
For the probes they are conditional on the fitted folds (they capture the
variation over test sentences, not over re-training); for retrieval they are
conditional on the candidate set (queries are resampled, candidates are fixed).

Pooling: the mean over a sentence's real tokens (attention mask), *excluding the
BOS token* when the tokenizer adds one: BOS carries a residual norm an order of
magnitude above the other tokens in many models (about 43k vs 3k in Gemma-3-270M)
and would otherwise dominate every sentence mean with a sentence-independent
vector.

Modules: :mod:`.sentence_reps` (the pooled representations; the heavy part, one
model pass per batch for all layers), :mod:`.lang_id`, :mod:`.retrieval` and
:func:`.stats.bootstrap_ci` work on plain numpy arrays, so tests and notebooks can
call them on synthetic data; this module builds the ``probes.csv`` table.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.languages import SCRIPTS, parse_pairs
from ..errors import DataError
from .lang_id import (
    DEFAULT_C, control_labels, group_folds, lang_id_scores, latin_languages, majority_predictions,
    probe_predictions,
)
from .retrieval import default_pairs, retrieval_per_item, retrieval_scores
from .sentence_reps import SentenceReps, check_sentences, pooling_weights, sentence_representations
from .stats import bootstrap_ci

COLUMNS = [
    "layer", "probe", "metric", "value", "ci_low", "ci_high", "control", "baseline", "selectivity",
    "selectivity_ci_low", "selectivity_ci_high", "lang_pair", "n",
]


def probe_table(
    reps: np.ndarray,
    langs: Sequence[str],
    token_ids: Sequence[Sequence[Sequence[int]]],
    ids: Sequence | None = None,
    layers: Sequence[int] | None = None,
    pairs=None,
    latin_langs: Sequence[str] | None = None,
    seed: int = 0,
    C: float = DEFAULT_C,
    n_splits: int = 5,
    n_boot: int = 200,
    progress: bool = False,
) -> pd.DataFrame:
    """The tidy probe table from representations ``[n_langs, n_sentences, n_layers, d]``.

    ``layers`` names the block index of each entry on axis 2 (default 0..).
    ``latin_langs`` defaults to the languages whose script is Latin in
    :data:`dftlens.data.languages.SCRIPTS`; with fewer than two of them the
    ``lang_id_latin`` rows are left out. ``pairs`` adds retrieval pairs to the
    default (every language against English). One row per layer x probe x
    metric (x pair); columns :data:`COLUMNS`.
    """
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    reps = np.asarray(reps)
    langs = list(langs)
    n_langs, n_sent, n_layers, _ = reps.shape
    if len(langs) != n_langs:
        raise ValueError(f"{len(langs)} language codes for {n_langs} languages in reps.")
    ids = [f"s{i}" for i in range(n_sent)] if ids is None else list(ids)
    if len(ids) != n_sent:
        raise DataError(f"{len(ids)} sentence ids for {n_sent} sentences.")
    layers = list(range(n_layers)) if layers is None else list(layers)
    if latin_langs is None:
        latin_langs = [lang for lang in langs if SCRIPTS.get(lang) == "Latin"]
    latin_langs = [lang for lang in langs if lang in set(latin_langs)]

    variants = {"lang_id_all": langs}
    if len(latin_langs) >= 2:
        variants["lang_id_latin"] = latin_langs
    setups = {}
    for probe, subset in variants.items():
        li = [langs.index(lang) for lang in subset]
        y = np.repeat(np.arange(len(li)), n_sent)
        groups = np.tile(np.asarray(ids, dtype=object), len(li))
        toks = [token_ids[i][s] for i in li for s in range(n_sent)]
        setups[probe] = (li, y, groups, control_labels(toks, y, len(li), seed), group_folds(groups, n_splits, seed))

    pair_list = list(dict.fromkeys(default_pairs(langs) + parse_pairs(pairs, langs, what="retrieval pair")))
    rows = []
    # One BLAS/OpenMP thread: these problems are small (~1000 x d), and thread pools
    # oversubscribed next to torch's made each fit about 30x slower on a busy CPU.
    with threadpool_limits(1):
        for k, layer in enumerate(tqdm(layers, desc="probes", unit="layer", disable=not progress)):
            rows.extend(_layer_rows(reps, k, layer, langs, n_sent, setups, pair_list, C, seed, n_boot))
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _layer_rows(reps, k, layer, langs, n_sent, setups, pair_list, C, seed, n_boot) -> list[dict]:
    """The rows of one layer (entry ``k`` on the layer axis of ``reps``)."""
    rows = []
    for probe, (li, y, groups, ctrl, folds) in setups.items():
        X = reps[li, :, k].reshape(len(li) * n_sent, -1)
        rows.append({"layer": layer, "probe": probe, "metric": "accuracy",
                     **lang_id_scores(X, y, ctrl, groups, folds, C, seed, n_boot)})
    for a, b in pair_list:
        for row in retrieval_scores(reps[langs.index(a), :, k], reps[langs.index(b), :, k], seed, n_boot):
            rows.append({"layer": layer, "probe": "retrieval", "lang_pair": f"{a}-{b}", **row})
    return rows


def run_probes(
    lm,
    sentences: dict[str, Sequence[str]],
    pairs=None,
    layers: Iterable[int] | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    ids: Sequence | None = None,
    batch_size: int = 16,
    C: float = DEFAULT_C,
    n_splits: int = 5,
    n_boot: int = 200,
) -> pd.DataFrame:
    """All probes for ``lm`` on parallel ``sentences`` (lang -> sentences aligned by index).

    ``ids`` are the sentence ids (the groups of the train/test split; default
    their index). The Latin-script subset is read from the text
    (:func:`latin_languages`). Returns the tidy table written as ``probes.csv``.
    """
    langs, n = check_sentences(sentences)
    if ids is not None and len(ids) != n:
        raise DataError(f"{len(ids)} sentence ids for {n} sentences per language.")
    out = sentence_representations(lm, sentences, layers, batch_size, progress)
    return probe_table(out.reps, out.langs, out.token_ids, ids, out.layers, pairs,
                       latin_languages(sentences), seed, C, n_splits, n_boot, progress)


def probe_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: language-ID accuracy and selectivity, and mean retrieval over pairs."""
    out = pd.DataFrame(index=sorted(table["layer"].unique()))
    out.index.name = "layer"
    for probe in ("lang_id_all", "lang_id_latin"):
        part = table[table["probe"] == probe].set_index("layer")
        if len(part):
            out[probe] = part["value"]
            out[f"{probe}_control"] = part["control"]
            out[f"{probe}_sel"] = part["selectivity"]
    ret = table[table["probe"] == "retrieval"]
    for metric in ("accuracy", "accuracy_uncentred", "cos_margin"):
        part = ret[ret["metric"] == metric]
        if len(part):
            out[f"retrieval_{metric}" if metric != "accuracy" else "retrieval"] = part.groupby("layer")["value"].mean()
    return out.reset_index()


__all__ = [
    "COLUMNS", "SentenceReps", "sentence_representations", "pooling_weights", "latin_languages", "group_folds",
    "control_labels", "probe_predictions", "majority_predictions", "bootstrap_ci", "lang_id_scores",
    "retrieval_per_item", "retrieval_scores", "default_pairs", "probe_table", "run_probes",
    "probe_summary",
]
