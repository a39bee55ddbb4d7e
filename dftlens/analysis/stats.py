"""Means with 95% confidence intervals: Student-t over items, percentile bootstrap over clusters."""

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


def summarise(frame: pd.DataFrame, by: list[str], columns: list[str], bounds: dict | None = None) -> pd.DataFrame:
    """One row per group: ``n_items`` and, per column, ``col``, ``col_lo``, ``col_hi``."""
    bounds = bounds or {}
    rows = []
    for key, group in frame.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n_items"] = int(len(group))
        for col in columns:
            mean, lo, hi = mean_ci(group[col])
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
