"""Language identity probes: can a linear classifier tell a sentence's language at a layer?

A standardised, L2-regularised multinomial logistic regression, 5 folds grouped
by sentence id, next to a majority baseline and a control task run through the
identical probe and folds (selectivity = accuracy - control accuracy; Hewitt and
Liang 2019). See :mod:`.linear_probes` for how the results enter ``probes.csv``.
"""

from __future__ import annotations

import unicodedata
import warnings
from typing import Sequence

import numpy as np

from ..errors import DataError
from .stats import bootstrap_ci

DEFAULT_C = 0.1  # inverse L2 strength on standardised features (see lang_id_scores)


def latin_languages(sentences: dict[str, Sequence[str]], threshold: float = 0.9) -> list[str]:
    """Languages whose letters are at least ``threshold`` Latin script, read from the text."""
    out = []
    for lang, texts in sentences.items():
        letters = [ch for text in texts for ch in text if ch.isalpha()]
        if letters and sum("LATIN" in unicodedata.name(ch, "") for ch in letters) / len(letters) >= threshold:
            out.append(lang)
    return out


def group_folds(groups: Sequence, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a shuffled GroupKFold: one group never straddles a split."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError("Language-identity probes need at least 2 sentences (ids) to split train/test.")
    splitter = GroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def control_labels(
    token_ids: Sequence[Sequence[int]], item_langs: Sequence, n_classes: int, seed: int = 0
) -> np.ndarray:
    """Control-task labels: a random linear read-out of the bag of token types.

    Hewitt and Liang give every *word type* a random but fixed label; a probe can
    then only succeed by memorising type identities, and its control accuracy
    measures how much the probe can memorise. The sentence-level analogue used
    here: every token type ``t`` (a vocabulary id) gets a fixed random score
    vector ``w_t ~ N(0, I_K)`` over the ``K`` classes of the real task; a
    sentence's score is the mean of ``w_t`` over its tokens (with multiplicity:
    the same mean pooling as the representation), minus the mean score of its
    language; its label is the argmax.

    Why this and not the simpler options:

    * a random label per item, or per sentence id, never recurs across a split
      grouped by sentence id, so the control would be at chance *by construction*
      and say nothing about the probe's capacity (and without the group split, a
      label shared by the translations of a sentence would reward cross-lingual
      alignment, a real property, rather than memorisation);
    * token types recur across sentences, so labels tied to them *can* be learnt
      on training sentences and transferred to test sentences, but only by
      memorising which types a sentence contains, i.e. lexical identity
      unrelated to the language label; a linear probe on a mean-pooled
      representation can represent exactly this rule (argmax of a linear map of
      the mean type embedding);
    * types are language-specific (every Chinese sentence ends in "。"), so raw
      type scores would carry a per-language offset and a probe that only knew
      the language would beat chance on the control. Subtracting each language's
      mean score removes that offset: the label distribution is roughly uniform
      within every language, and the control measures memorisation, not
      language.

    On Gemma-3-270M (130 bundled sentences, 9 languages, layer 8, one fold) the
    probe fits the control labels of its training sentences almost perfectly
    (train accuracy 0.999) while its test accuracy stays near chance (0.115 vs
    1/9): memorisation is possible, transfer to unseen sentences is not, which
    is what a control task should show.
    """
    item_langs = np.asarray(item_langs)
    types = sorted({t for ids in token_ids for t in ids})
    row = {t: i for i, t in enumerate(types)}
    table = np.random.default_rng(seed).standard_normal((len(types), n_classes))
    scores = np.stack([table[[row[t] for t in ids]].mean(axis=0) for ids in token_ids])
    for lang in np.unique(item_langs):
        scores[item_langs == lang] -= scores[item_langs == lang].mean(axis=0)
    return scores.argmax(axis=1)


def probe_predictions(
    X: np.ndarray, y: np.ndarray, folds, C: float = DEFAULT_C, seed: int = 0, max_iter: int = 1000
) -> np.ndarray:
    """Out-of-fold predictions of a standardised multinomial logistic regression."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.empty(len(y), dtype=y.dtype)
    for train, test in folds:
        if len(np.unique(y[train])) < 2:  # a one-class training fold: the only possible answer
            pred[test] = y[train][0]
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[train], y[train])
        pred[test] = clf.predict(X[test])
    return pred


def majority_predictions(y: np.ndarray, folds) -> np.ndarray:
    """Out-of-fold predictions of the training folds' most frequent class."""
    pred = np.empty(len(y), dtype=y.dtype)
    for train, test in folds:
        values, counts = np.unique(y[train], return_counts=True)
        pred[test] = values[counts.argmax()]
    return pred


def lang_id_scores(
    X: np.ndarray,
    y: np.ndarray,
    control_y: np.ndarray,
    groups: Sequence,
    folds,
    C: float = DEFAULT_C,
    seed: int = 0,
    n_boot: int = 200,
) -> dict:
    """Accuracy, control accuracy, majority baseline and selectivity with CIs.

    ``C`` = 0.1 on standardised features: with more dimensions than training
    sentences the classes are separable at any C, and a stronger L2 penalty is
    what Hewitt and Liang recommend for selective probes (it hurts the
    memorising control far more than a real, low-complexity signal).
    """
    correct = probe_predictions(X, y, folds, C, seed) == y
    ctrl = probe_predictions(X, control_y, folds, C, seed) == control_y
    base = majority_predictions(y, folds) == y
    per_item = np.stack([correct, ctrl, correct.astype(float) - ctrl], axis=1).astype(float)
    ci = bootstrap_ci(per_item, groups, n_boot, seed)
    return {
        "value": correct.mean(), "ci_low": ci[0, 0], "ci_high": ci[0, 1],
        "control": ctrl.mean(), "baseline": base.mean(),
        "selectivity": correct.mean() - ctrl.mean(), "selectivity_ci_low": ci[2, 0], "selectivity_ci_high": ci[2, 1],
        "n": len(y),
    }
