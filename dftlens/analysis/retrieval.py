"""Cross-lingual alignment: does a sentence's representation retrieve its translation?

For a language pair each sentence retrieves its translation among all ``n``
candidates of the other language by cosine similarity (both directions averaged;
chance ``1/n``), after mean-centring each language's vectors; the un-centred
accuracy and the cosine margin are reported too. See :mod:`.linear_probes`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .stats import bootstrap_ci


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_per_item(A: np.ndarray, B: np.ndarray, centre: bool = True) -> dict[str, np.ndarray]:
    """Per sentence: translation retrieval hits (both directions) and cosine margin.

    ``A`` and ``B`` are ``[n, d]`` aligned by row. A hit needs the true
    translation's cosine to be strictly above every other candidate's (ties
    count as misses). ``margin[i]`` = cos(a_i, b_i) minus the mean cosine of
    a_i and b_i with the other ``n - 1`` sentences; its mean is the mean cosine
    of true pairs minus that of non-pairs.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if centre:
        A = A - A.mean(axis=0)
        B = B - B.mean(axis=0)
    S = _unit(A) @ _unit(B).T  # S[i, j] = cos(a_i, b_j)
    n = len(S)
    diag = np.diag(S).copy()
    off = S.copy()
    np.fill_diagonal(off, -np.inf)
    a_to_b = diag > off.max(axis=1)
    b_to_a = diag > off.max(axis=0)
    if n > 1:
        margin = diag - (S.sum(axis=1) + S.sum(axis=0) - 2 * diag) / (2 * (n - 1))
    else:
        margin = np.zeros(n)
    return {"a_to_b": a_to_b, "b_to_a": b_to_a, "hit": (a_to_b.astype(float) + b_to_a) / 2, "margin": margin}


def retrieval_scores(A: np.ndarray, B: np.ndarray, seed: int = 0, n_boot: int = 200) -> list[dict]:
    """Rows for one pair at one layer: accuracy and margin, centred and un-centred."""
    rows = []
    ids = np.arange(len(A))
    for centre, suffix in ((True, ""), (False, "_uncentred")):
        item = retrieval_per_item(A, B, centre)
        ci = bootstrap_ci(np.stack([item["hit"], item["margin"]], axis=1), ids, n_boot, seed)
        rows.append({"metric": "accuracy" + suffix, "value": item["hit"].mean(), "ci_low": ci[0, 0],
                     "ci_high": ci[0, 1], "baseline": 1.0 / len(A), "n": len(A)})
        rows.append({"metric": "cos_margin" + suffix, "value": item["margin"].mean(), "ci_low": ci[1, 0],
                     "ci_high": ci[1, 1], "baseline": 0.0, "n": len(A)})
    return rows


def default_pairs(langs: Sequence[str]) -> list[tuple[str, str]]:
    """Every language against English (against the first language if English is absent)."""
    if not langs:
        return []
    pivot = "en" if "en" in langs else langs[0]
    return [(lang, pivot) for lang in langs if lang != pivot]
