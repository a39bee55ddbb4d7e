"""Choosing the language-conversion (LC) and English-thinking (ET) layers.

The DFT paper picks, by eye, the first and second sharp drop of the logit-lens
entropy. dftlens turns that into a deterministic rule that also uses the
language probabilities and the probes, and records which signal decided:

1. Curves are means over translation prompts with a non-English input, each
   (input, target) pair weighted equally. Per pair, the items the model answers
   correctly (top-1 lens token at the last layer in the target set; the ``correct``
   subset) are used when there are at least ``min_correct_items`` of them (default 8),
   else all of the pair's items; ``evidence["rule_subsets"]`` records which, with n.
2. ET (``decided_by="english_onset"``): the first layer in ``1..L-2`` whose P(English
   answer) reaches ``onset_frac`` of its peak over those layers -- where the
   residual stream starts to decode the English word, the paper's second entropy
   drop. If English never reaches ``min_en_mass`` the model shows no English pivot
   and ET falls back to the second sharp entropy drop (``"entropy_second_drop"``).
3. LC (``decided_by="alignment"``): the layer in ``1..ET-1`` where the cross-lingual
   retrieval accuracy of parallel sentences rises most from the layer before -- the
   sharpest step of mapping the input into a space shared across languages (the
   earliest such layer on ties). Without probe results, the first sharp entropy drop
   below ET (``"entropy_first_drop"``), else the steepest drop (``"entropy_steepest_drop"``).
4. A "sharp drop" at layer l is a fall H(l-1) - H(l) of at least ``drop_frac`` times
   the largest single-layer fall of the curve.
5. The result always satisfies 0 < LC < ET < L-1; user overrides replace either.
6. Causal evidence (``dftlens probe --causal``, ``analysis/patching.py``) is recorded
   in ``evidence["causal"]`` and never moves LC or ET: the output-language layer and
   the concept-transfer layer range from Dumas et al.'s concept patching, with two
   checks, ``lc_before_concept_transfer`` (LC <= the range's last layer: the input is
   mapped to the shared concept space by then) and ``et_in_concept_transfer`` (ET in
   the range). A failed check is a reason to look at the figures and override.
Layer numbers are 0-based block indices; the hooks are ``blocks.{l}.hook_resid_post``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..errors import LayerError
from ..layers import LayerChoice, check_order  # noqa: F401  (LayerChoice lives in dftlens.layers)


@dataclass(frozen=True)
class RuleParams:
    """The thresholds of the LC/ET rule (module docstring, steps 1-4).

    ``onset_frac``: ET is the first layer whose P(English) reaches this fraction of its peak;
    ``min_en_mass``: below this peak P(English) the model has no English pivot (entropy
    fallback); ``drop_frac``: a sharp entropy drop falls by at least this fraction of the
    largest single-layer fall; ``min_correct_items``: per pair, the fewest correctly answered
    items for the curves to use only those.
    """

    onset_frac: float = 0.5
    min_en_mass: float = 0.01
    drop_frac: float = 0.2
    min_correct_items: int = 8  # per pair: below this, the pair's curves use all items


def sharp_drops(entropy: np.ndarray, drop_frac: float) -> list[int]:
    """Layers l whose entropy fell from l-1 by at least drop_frac of the largest fall."""
    fall = -np.diff(np.asarray(entropy, dtype=float))
    biggest = float(np.nanmax(fall)) if len(fall) else 0.0
    return [int(l) + 1 for l in np.flatnonzero(fall >= drop_frac * biggest)] if biggest > 0 else []


def translation_curves(lens_items: pd.DataFrame, min_correct: int | None = None) -> pd.DataFrame:
    """Per layer means over translation prompts with non-English input, pairs weighted equally.

    With ``min_correct`` (and a ``correct`` column), each pair uses only its correctly
    answered items when it has at least ``min_correct`` of them; see :func:`rule_curves`."""
    return rule_curves(lens_items, min_correct)[0]


def rule_curves(lens_items: pd.DataFrame, min_correct: int | None = RuleParams.min_correct_items
                ) -> tuple[pd.DataFrame, list[dict]]:
    """The rule's curves (see :func:`translation_curves`) and, per pair, the subset used:
    ``[{"pair": "fr->zh", "subset": "correct", "n_items": 12, "n_correct": 12, "n_all": 32}, ...]``."""
    rows = lens_items[(lens_items["task"] == "translation") & (lens_items["input_lang"] != "en")]
    if rows.empty:
        rows = lens_items
    parts, used = [], []
    for (src, tgt), pair in rows.groupby(["input_lang", "target_lang"], sort=True):
        n_all = pair["item_id"].nunique() if "item_id" in pair.columns else None
        subset, chosen = "all", pair
        n_correct = None
        if "correct" in pair.columns:
            right = pair[pair["correct"].astype(bool)]
            n_correct = right["item_id"].nunique()
            if min_correct is not None and n_correct >= min_correct:
                subset, chosen = "correct", right
        used.append({"pair": f"{src}->{tgt}", "subset": subset,
                     "n_items": n_correct if subset == "correct" else n_all, "n_correct": n_correct, "n_all": n_all})
        parts.append(chosen.groupby("layer")[["p_en", "p_target", "entropy_bits"]].mean())
    return pd.concat(parts).groupby(level=0).mean().sort_index(), used


def choose_layers(curves: pd.DataFrame, n_layers: int, alignment: pd.Series | None = None,
                  params: RuleParams = RuleParams()) -> tuple[int, int, dict]:
    """Apply the rule in the module docstring; returns (lc, et, evidence)."""
    if n_layers < 4:
        raise LayerError(f"Choosing LC < ET needs at least 4 layers; the model has {n_layers}.")
    entropy = curves["entropy_bits"].to_numpy(float)
    p_en = curves["p_en"].to_numpy(float)
    drops = sharp_drops(entropy, params.drop_frac)
    inner = np.arange(1, n_layers - 1)
    peak = float(p_en[inner].max())
    evidence: dict = {"rule": asdict(params), "sharp_entropy_drops": drops, "p_en_peak": round(peak, 4)}

    if peak >= params.min_en_mass:
        et = int(inner[np.argmax(p_en[inner] >= params.onset_frac * peak)])
        evidence["et_decided_by"] = "english_onset"
    else:
        late = [d for d in drops if 1 < d < n_layers - 1]
        et = late[1] if len(late) > 1 else (late[0] if late else n_layers // 2)
        evidence["et_decided_by"] = "entropy_second_drop" if len(late) > 1 else "entropy_fallback"
    et = int(min(max(et, 2), n_layers - 2))

    below = np.arange(1, et)
    if alignment is not None and alignment.notna().any():
        align = np.nan_to_num(alignment.reindex(range(n_layers)).to_numpy(float))
        rise = align[below] - align[below - 1]
        lc = int(below[np.argmax(rise)])
        evidence["lc_decided_by"] = "alignment"
        evidence["alignment_step_at_lc"] = [round(float(align[lc - 1]), 4), round(float(align[lc]), 4)]
    else:
        early = [d for d in drops if 1 <= d < et]
        if early:
            lc, evidence["lc_decided_by"] = early[0], "entropy_first_drop"
        else:
            lc = int(below[np.argmin(np.diff(entropy)[below - 1])])
            evidence["lc_decided_by"] = "entropy_steepest_drop"
    evidence.update({
        "entropy_at_lc": round(float(entropy[lc]), 3), "entropy_at_et": round(float(entropy[et]), 3),
        "p_en_at_et": round(float(p_en[et]), 4), "p_target_at_et": round(float(curves["p_target"].iloc[et]), 4),
        "curves": {c: [round(float(v), 4) for v in curves[c]] for c in ("p_en", "p_target", "entropy_bits")},
    })
    if alignment is not None:
        evidence["curves"]["alignment"] = [round(float(v), 4) for v in alignment.reindex(range(n_layers))]
    return int(lc), et, evidence


def apply_overrides(lc: int, et: int, evidence: dict, n_layers: int,
                    lc_override: int | None, et_override: int | None) -> tuple[int, int]:
    """Replace the rule's ``lc``/``et`` by the user's overrides (None: keep), recorded in ``evidence``.

    An override sets ``evidence["lc_decided_by"]`` (or ``"et_..."``) to ``"user override"`` and keeps
    the rule's layer as ``evidence["lc_rule_choice"]``. Returns ``(lc, et)``.

    Raises:
        LayerError: an override outside ``0 .. n_layers - 1``, or the final LC not before ET.
    """
    check_order(lc_override, et_override, n_layers)
    if lc_override is not None:
        evidence["lc_decided_by"], evidence["lc_rule_choice"], lc = "user override", lc, lc_override
    if et_override is not None:
        evidence["et_decided_by"], evidence["et_rule_choice"], et = "user override", et, et_override
    check_order(lc, et)
    return lc, et
