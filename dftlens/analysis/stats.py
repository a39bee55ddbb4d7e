"""Means with 95% confidence intervals over items."""

from __future__ import annotations

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
