"""Means with 95% confidence intervals (Student-t, cluster bootstrap) and paired differences over seeds."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval; NaNs ignored, (nan, nan, nan) if empty."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, mean, mean)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return (mean, mean - half, mean + half)


MIN_BOOTSTRAP_ITEMS = 5  # fewer items than this: no percentile interval (its quantiles would be single items)


def bootstrap_mean_ci(values: np.ndarray | pd.Series, level: float = 0.95, n_boot: int = 1000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval over items (Efron & Tibshirani 1993, ch. 13).

    The interval lies inside the range of the values, so a bounded quantity (entropy >= 0
    bits) gets a bounded interval. NaNs ignored; with fewer than :data:`MIN_BOOTSTRAP_ITEMS`
    values the bounds are NaN (no interval), with none everything is NaN.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if len(x) < MIN_BOOTSTRAP_ITEMS:
        return (mean, np.nan, np.nan)
    draws = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    lo, hi = np.quantile(x[draws].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return (mean, float(lo), float(hi))


def summarise(frame: pd.DataFrame, by: list[str], columns: list[str], bounds: dict | None = None,
              bootstrap: Sequence[str] = ()) -> pd.DataFrame:
    """One row per group: ``n_items`` and, per column, ``col``, ``col_lo``, ``col_hi``.

    Intervals are Student-t (:func:`mean_ci`), clipped to ``bounds[col]`` where given, except
    for the ``bootstrap`` columns: percentile bootstrap (:func:`bootstrap_mean_ci`), none
    (NaN bounds) for groups of fewer than :data:`MIN_BOOTSTRAP_ITEMS` items.
    """
    bounds = bounds or {}
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n_items"] = int(len(group))
        for col in columns:
            mean, lo, hi = bootstrap_mean_ci(group[col]) if col in bootstrap else mean_ci(group[col])
            if col in bounds:
                lo, hi = (float(np.clip(v, *bounds[col])) if not np.isnan(v) else v for v in (lo, hi))
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_ci(
    per_item: np.ndarray, groups: Sequence, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> np.ndarray:
    """Cluster-bootstrap percentile intervals of the item means of each column.

    ``per_item`` is ``[n_items]`` or ``[n_items, k]``; whole groups (sentence
    ids) are resampled. Returns ``[k, 2]`` (low, high). Differences of columns
    (selectivity) must be passed as their own column so they stay paired.
    """
    x = np.asarray(per_item, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = g.max() + 1
    sums = np.zeros((n_groups, x.shape[1]))
    np.add.at(sums, g, x)
    sizes = np.bincount(g, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(float)  # [n_boot, G]
    stats = counts @ sums / (counts @ sizes)[:, None]  # [n_boot, k]
    alpha = (1 - level) / 2
    return np.quantile(stats, [alpha, 1 - alpha], axis=0).T


def paired_over_seeds(variant: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Paired difference ``variant - reference`` over examples and seeds, with its standard errors.

    ``variant`` and ``reference`` are ``[n_seeds, n_examples]`` per-example scores
    (e.g. held-out NLL in nats/token) of two models trained with the same seeds and
    scored on the same examples; seed ``s`` of both shares data order, initialisation
    and demonstrations. ``d[s, i]`` is the per-example difference. Returns:

    - ``diff``: the grand mean of ``d``;
    - ``se_examples``: the SE over examples of the seed-averaged differences
      ``mean_s d[s, i]`` (``sd / sqrt(n_examples)``): the example-sampling error;
    - ``se_seeds``: the SE over seeds of the per-seed means ``mean_i d[s, i]``
      (``sd / sqrt(n_seeds)``; 0 with one seed): the training-run error;
    - ``se``: ``sqrt(se_examples**2 + se_seeds**2)``, the SE of the grand mean in a
      crossed examples x seeds design (conservative: the interaction term is counted
      in both parts); with one seed it is the ordinary paired SE over examples.
    - ``n_seeds``, ``n_examples``.

    Raises ValueError when the shapes differ or there are fewer than 2 examples.
    """
    v, r = np.atleast_2d(np.asarray(variant, dtype=float)), np.atleast_2d(np.asarray(reference, dtype=float))
    if v.shape != r.shape or v.shape[1] < 2:
        raise ValueError(f"paired scores need equal [seeds, examples] shapes with >= 2 examples, not "
                         f"{v.shape} and {r.shape}")
    d = v - r
    n_seeds, n_examples = d.shape
    se_examples = float(d.mean(axis=0).std(ddof=1) / np.sqrt(n_examples))
    se_seeds = float(d.mean(axis=1).std(ddof=1) / np.sqrt(n_seeds)) if n_seeds > 1 else 0.0
    return {"diff": float(d.mean()), "se_examples": se_examples, "se_seeds": se_seeds,
            "se": float(np.hypot(se_examples, se_seeds)), "n_seeds": n_seeds, "n_examples": n_examples}
