"""Reading the probe's tables for a figure: the layer choice, numbers, language pairs, facets.

Everything here selects or converts rows; nothing draws. See :mod:`.figures` for the conventions
every figure follows.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from .figure_style import FACET_COLS


def choice_dict(choice: Any) -> dict:
    """The layer choice as a plain dict: accepts None, a dict (``layers.json``), or an
    object with ``to_dict()`` or ``lc_layer`` / ``et_layer`` attributes."""
    if choice is None:
        return {}
    if isinstance(choice, Mapping):
        return dict(choice)
    if hasattr(choice, "to_dict"):
        return dict(choice.to_dict())
    out = {}
    for key in ("model", "n_layers", "lc_layer", "et_layer", "hooks", "languages", "evidence"):
        if hasattr(choice, key):
            out[key] = getattr(choice, key)
    return out


def layer_or_none(value: Any) -> int | None:
    """A layer number as an int; None for None, NaN or anything that is not a number
    (a choice without ``lc_layer`` / ``et_layer``, or ``layers.json`` with ``null``)."""
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
        return int(value)
    except (TypeError, ValueError):
        return None


def entropy_ci_columns(frame: pd.DataFrame) -> tuple[str, str]:
    """The entropy CI columns: ``entropy_bits_lo/_hi`` (the probe's summarise) or ``entropy_lo/_hi``."""
    for lo, hi in (("entropy_bits_lo", "entropy_bits_hi"), ("entropy_lo", "entropy_hi")):
        if lo in frame.columns and hi in frame.columns:
            return lo, hi
    return "entropy_bits_lo", "entropy_bits_hi"


def has_numbers(df: pd.DataFrame, *cols: str) -> bool:
    """True when every column exists and holds at least one number."""
    return all(c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any() for c in cols)


def as_numbers(series: pd.Series) -> list:
    """Numbers as a list with NaN turned into None (plotly draws gaps for None)."""
    values = pd.to_numeric(series, errors="coerce")
    return [None if pd.isna(v) else float(v) for v in values]


def pair_key(pair: Any) -> tuple[str, str]:
    """("fr", "zh"), "fr:zh", "fr-zh" or "fr->zh" -> ("fr", "zh")."""
    if isinstance(pair, str):
        for sep in ("->", "→", ":", "-"):
            if sep in pair:
                a, b = pair.split(sep, 1)
                return a.strip(), b.strip()
        raise ValueError(f"Cannot read language pair {pair!r}; write it as 'fr:zh' or ('fr', 'zh').")
    a, b = pair
    return str(a), str(b)


def filter_lens(lens_df: pd.DataFrame, task=None, pairs=None, subset: str | None = "all") -> pd.DataFrame:
    """The per-layer lens summary rows to draw: one ``subset``, then ``task`` and ``pairs``.

    Args:
        lens_df: the probe's per-layer summary (``lens.csv`` / ``result.lens``), one row per
            task, language pair and layer (and subset, when it has a ``subset`` column).
        task: a task name or names; None keeps every task.
        pairs: language pairs in any form :func:`pair_key` reads; None keeps every pair.
        subset: the value of the ``subset`` column to keep (``"all"``: every item); None keeps
            every row (for tables without subsets).

    Raises:
        ValueError: the table lacks one of ``task``, ``input_lang``, ``target_lang``, ``layer``;
            it has several rows per task, pair and layer (per-item rows, or several subsets);
            or a pair cannot be read.
    """
    if "subset" in lens_df.columns and subset is not None:
        lens_df = lens_df[lens_df["subset"].astype(str) == subset]
    missing = [c for c in (*FACET_COLS, "layer") if c not in lens_df.columns]
    if missing:
        raise ValueError(f"lens table lacks column(s) {', '.join(missing)}; is it the probe's lens.csv?")
    if lens_df.duplicated([*FACET_COLS, "layer"]).any():
        raise ValueError("lens table has several rows per task, pair and layer: pass the per-layer summary "
                         "(lens.csv / result.lens) of one subset, not the per-item rows.")
    df = lens_df
    if task is not None:
        tasks = [task] if isinstance(task, str) else list(task)
        df = df[df["task"].isin(tasks)]
    if pairs is not None:
        keys = {pair_key(p) for p in pairs}
        mask = [(i, t) in keys for i, t in zip(df["input_lang"].astype(str), df["target_lang"].astype(str))]
        df = df[mask]
    return df


# The facet order of every figure: the paper's three tasks first, then any other task.
TASK_ORDER = ("translation", "repetition", "cloze")


def facet_keys(lens_df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (task, input_lang, target_lang) combinations: translation, repetition, cloze (then
    any other task), and within a task in the table's order."""
    seen: dict[tuple[str, str, str], None] = {}
    for row in lens_df[list(FACET_COLS)].astype(str).itertuples(index=False):
        seen.setdefault(tuple(row), None)
    rank = {task: i for i, task in enumerate(TASK_ORDER)}
    return sorted(seen, key=lambda key: rank.get(key[0], len(rank)))


def facet_frame(df: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    """The rows of one ``(task, input_lang, target_lang)`` facet of ``df``, sorted by layer."""
    task, src, tgt = key
    sub = df[(df["task"].astype(str) == task) & (df["input_lang"].astype(str) == src)
             & (df["target_lang"].astype(str) == tgt)]
    return sub.sort_values("layer")
