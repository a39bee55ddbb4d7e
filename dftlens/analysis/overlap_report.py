"""How much the overlap policy moves the curves and the layer choice (the sensitivity line).

The probe measures every item once; ``lens_items.csv`` carries, besides ``p_en`` under the
run's policy, ``p_en_exclusive``, ``p_en_drop`` and ``p_en_keep``: P(en) of the same forward
pass under each policy's English set, NaN where that policy drops the item (see
:mod:`.token_sets`). From them, per task and pair and policy: the items the policy keeps
among those measured, and the peak of the mean P(en) over layers; and per policy the LC/ET
layers the rule picks on those curves. Because only the measured items enter, a policy
that keeps fewer items than the run's is measured on the run's items it would keep (with
``--max-items`` its own run could have measured others).
"""

from __future__ import annotations

import pandas as pd

from .lens_rows import POLICY_COLUMNS
from .token_sets import OVERLAP_POLICIES


def overlap_sensitivity(lens_items: pd.DataFrame) -> pd.DataFrame:
    """Per task, pair and overlap policy: ``n_items`` (measured items the policy keeps),
    ``peak_p_en`` (the maximum over layers of the mean P(en) of those items, in [0, 1]) and
    ``peak_layer`` (its 0-based layer); empty when ``lens_items`` has no ``p_en_<policy>``
    columns."""
    if lens_items is None or lens_items.empty or not set(POLICY_COLUMNS) <= set(lens_items.columns):
        return pd.DataFrame()
    rows = []
    for (task, src, tgt), group in lens_items.groupby(["task", "input_lang", "target_lang"], sort=False):
        for policy, column in zip(OVERLAP_POLICIES, POLICY_COLUMNS):
            kept = group[group[column].notna()]
            row = {"task": task, "input_lang": src, "target_lang": tgt, "policy": policy,
                   "n_items": int(kept["item_id"].nunique()), "peak_p_en": float("nan"), "peak_layer": None}
            if not kept.empty:
                curve = kept.groupby("layer")[column].mean()
                row["peak_p_en"], row["peak_layer"] = float(curve.max()), int(curve.idxmax())
            rows.append(row)
    return pd.DataFrame(rows)


def policy_choices(lens_items: pd.DataFrame, n_layers: int, alignment: pd.Series | None = None) -> list[dict]:
    """The layer rule's LC and ET under each overlap policy: ``[{"policy", "lc", "et"}, ...]``,
    the rule (:func:`~.layer_choice.choose_layers`) run on each policy's P(en) with the items it
    keeps (``lc``/``et`` None when the policy keeps no translation item)."""
    from .layer_choice import RuleParams, choose_layers, rule_curves

    out = []
    for policy, column in zip(OVERLAP_POLICIES, POLICY_COLUMNS):
        if column not in lens_items.columns:
            continue
        kept = lens_items[lens_items[column].notna()].assign(p_en=lambda f, c=column: f[c])
        if kept.empty or not (kept["task"] == "translation").any():
            out.append({"policy": policy, "lc": None, "et": None})
            continue
        curves, _ = rule_curves(kept, RuleParams().min_correct_items)
        if n_layers < 4:  # too few blocks for the rule (the run's layers were given by hand)
            out.append({"policy": policy, "lc": None, "et": None})
            continue
        choice = choose_layers(curves, n_layers, alignment)
        out.append({"policy": policy, "lc": choice.lc_layer, "et": choice.et_layer})
    return out
