"""The items the layer rules read, as arrays: per (input, target) pair, per item and layer.

:func:`pair_items` turns the probe's ``lens_items`` rows into one :class:`PairItems` per
pair, so that :func:`~.layer_choice.rule_curves` and the bootstrap
(:mod:`.layer_bootstrap`) average exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

COLUMNS = ("p_en", "p_target", "p_input", "entropy_bits")


@dataclass(frozen=True)
class PairItems:
    """One (input, target) pair's per-item curves: ``values`` [n_items, n_layers, n_columns]
    over :attr:`columns`, ``correct`` [n_items] (answered correctly at the last layer)."""

    name: str
    columns: tuple[str, ...]
    values: np.ndarray
    correct: np.ndarray
    has_correct: bool

    @property
    def n_items(self) -> int:
        """Items of this pair."""
        return len(self.values)

    def subset(self, rows: np.ndarray, min_correct: int | None) -> tuple[np.ndarray, str]:
        """``rows`` restricted to the correct ones when at least ``min_correct`` are, with the subset's name."""
        if self.has_correct and min_correct is not None:
            right = rows[self.correct[rows]]
            if len(right) >= min_correct:
                return right, "correct"
        return rows, "all"

    def frame(self, means: np.ndarray) -> pd.DataFrame:
        """Per-layer means [n_layers, n_columns] as the rules' curves table (index: layer)."""
        return pd.DataFrame(means, columns=list(self.columns))


def pair_items(lens_items: pd.DataFrame) -> list[PairItems]:
    """The rule's items (translation prompts with non-English input; all rows if none), per pair."""
    rows = lens_items[(lens_items["task"] == "translation") & (lens_items["input_lang"] != "en")]
    rows = lens_items if rows.empty else rows
    columns = tuple(c for c in COLUMNS if c in rows.columns)
    if "item_id" not in rows.columns:
        rows = rows.assign(item_id=rows.groupby(["input_lang", "target_lang", "layer"]).cumcount())
    out = []
    for (src, tgt), pair in rows.groupby(["input_lang", "target_lang"], sort=True):
        pair = pair.sort_values(["item_id", "layer"])
        n_layers = pair["layer"].nunique()
        values = pair[list(columns)].to_numpy(float).reshape(-1, n_layers, len(columns))
        has_correct = "correct" in pair.columns
        correct = (pair["correct"].astype(bool).to_numpy().reshape(-1, n_layers)[:, 0] if has_correct
                   else np.zeros(len(values), bool))
        out.append(PairItems(f"{src}->{tgt}", columns, values, correct, has_correct))
    return out
