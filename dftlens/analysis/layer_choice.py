"""Choosing the language-conversion (LC) and English-thinking (ET) layers.

The DFT paper picks, by eye, the first and second sharp drop of the logit-lens
entropy. dftlens turns that into a deterministic rule that also uses the
language probabilities and the probes, and records which signal decided:

1. Curves are means over translation prompts with a non-English input, each
   (input, target) pair weighted equally. Per pair, the items the model answers
   correctly (top-1 lens token at the last layer in the target set; the ``correct``
   subset) are used when there are at least ``min_correct_items`` of them (default 8),
   else all of the pair's items; ``evidence.rule_subsets`` records which, with n.
2. ET (``decided_by="english_onset"``): the first layer in ``2..L-2`` whose P(English
   answer) reaches ``onset_frac`` of its peak over ``1..L-2`` -- where the residual
   stream starts to decode the English word. If English never reaches ``min_en_mass``
   the model shows no English pivot and ET falls back to the second sharp entropy drop
   (``"entropy_second_drop"``).
3. LC (``decided_by="alignment"``): the layer in ``1..ET-1`` where the cross-lingual
   retrieval accuracy of parallel sentences rises most from the layer before -- the
   sharpest step of mapping the input into a space shared across languages (the
   earliest such layer on ties). Without probe results, the first sharp entropy drop
   below ET (``"entropy_first_drop"``), else the steepest drop (``"entropy_steepest_drop"``).
4. A "sharp drop" at layer l is a fall H(l-1) - H(l) of at least ``drop_frac`` times
   the largest single-layer fall of the curve.
5. The paper's own rule (``rule="entropy"``, Huo et al. AAAI 2025, who read the first
   and second sharp drop of the lens entropy by eye), made precise: the falls
   ``H(l-1) - H(l)`` for ``l`` in ``1..L-2`` (the last block, which always sharpens the
   output, is left out); a layer is sharp when its fall is positive and at least
   ``drop_frac`` times the largest of those falls; adjacent sharp layers are one drop,
   placed at its largest fall (the earliest on ties). LC is the first drop, ET the
   second (:func:`entropy_drops`). Every rule's answer is recorded
   (``evidence.rule_choice``) whichever decides.
6. User overrides apply before the rule: a given ET bounds the LC search (``1..ET-1``),
   a given LC the ET search (``LC+1..L-2``); with both given no rule is needed (a model
   with 2 blocks is accepted). The result satisfies LC < ET (:func:`dftlens.layers.check_order`).
7. Causal evidence (``dftlens probe --causal``, :mod:`.patch_evidence`) is recorded in
   ``evidence.causal`` and as readings; it never moves LC or ET.
Layer numbers are 0-based block indices; the hooks are ``blocks.{l}.hook_resid_post``.
:mod:`.layer_bootstrap` resamples items to give each choice its support and interval and
marks a weak choice provisional.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..errors import LayerError
from ..layer_evidence import Evidence
from ..layers import LayerChoice, check_order
from .rule_items import pair_items

RULES = ("current", "entropy")


@dataclass(frozen=True)
class RuleParams:
    """The thresholds of the LC/ET rules (module docstring) and of the provisional marks.

    ``onset_frac``: ET is the first layer whose P(English) reaches this fraction of its peak;
    ``min_en_mass``: below this peak P(English) the model has no English pivot (entropy
    fallback); ``drop_frac``: a sharp entropy drop falls by at least this fraction of the
    largest single-layer fall; ``min_correct_items``: per pair, the fewest correctly answered
    items for the curves to use only those. Provisional (:mod:`.layer_bootstrap`):
    ``n_resamples`` bootstrap resamples; a rule-chosen layer picked in under ``min_support``
    of them; P(English) at ET under ``min_en_ratio`` times P(input language) there; fewer
    than ``min_items`` items in a pair the rule reads.
    """

    onset_frac: float = 0.5
    min_en_mass: float = 0.01
    drop_frac: float = 0.2
    min_correct_items: int = 8  # per pair: below this, the pair's curves use all items
    n_resamples: int = 200
    min_support: float = 0.6
    min_en_ratio: float = 0.25
    min_items: int = 16


@dataclass(frozen=True)
class RuleAnswer:
    """One rule's LC and ET (None: this rule has no answer) and the step that set each."""

    lc: int | None
    et: int | None
    lc_by: str
    et_by: str


def sharp_drops(entropy: np.ndarray, drop_frac: float) -> list[int]:
    """Layers l whose entropy fell from l-1 by at least drop_frac of the largest fall."""
    fall = -np.diff(np.asarray(entropy, dtype=float))
    biggest = float(np.nanmax(fall)) if len(fall) else 0.0
    return [int(l) + 1 for l in np.flatnonzero(fall >= drop_frac * biggest)] if biggest > 0 else []


def entropy_drops(entropy: np.ndarray, drop_frac: float) -> list[int]:
    """The sharp drops of rule 5 (module docstring), in layer order: one layer per drop."""
    h = np.asarray(entropy, dtype=float)
    layers = np.arange(1, len(h) - 1)
    fall = h[layers - 1] - h[layers]
    if not len(fall) or not np.nanmax(fall) > 0:
        return []
    sharp = (fall > 0) & (fall >= drop_frac * np.nanmax(fall))
    drops, run = [], []
    for layer, is_sharp, f in zip(layers, sharp, fall):
        if is_sharp:
            run.append((f, -layer))
        elif run:
            drops.append(-max(run)[1]), run.clear()
    if run:
        drops.append(-max(run)[1])
    return [int(d) for d in drops]


def translation_curves(lens_items: pd.DataFrame, min_correct: int | None = None) -> pd.DataFrame:
    """Per layer means over translation prompts with non-English input, pairs weighted equally.

    With ``min_correct`` (and a ``correct`` column), each pair uses only its correctly
    answered items when it has at least ``min_correct`` of them; see :func:`rule_curves`."""
    return rule_curves(lens_items, min_correct)[0]


def rule_curves(lens_items: pd.DataFrame, min_correct: int | None = RuleParams.min_correct_items
                ) -> tuple[pd.DataFrame, list[dict]]:
    """The rule's curves (see :func:`translation_curves`) and, per pair, the subset used:
    ``[{"pair": "fr->zh", "subset": "correct", "n_items": 12, "n_correct": 12, "n_all": 32}, ...]``."""
    pairs = pair_items(lens_items)
    parts, used = [], []
    for pair in pairs:
        rows, subset = pair.subset(np.arange(pair.n_items), min_correct)
        parts.append(pair.values[rows].mean(axis=0))
        used.append({"pair": pair.name, "subset": subset, "n_items": len(rows),
                     "n_correct": int(pair.correct.sum()) if pair.has_correct else None, "n_all": pair.n_items})
    return pairs[0].frame(np.mean(parts, axis=0)), used


def _english_onset(curves: pd.DataFrame, n_layers: int, params: RuleParams, lc: int | None
                   ) -> tuple[int | None, str]:
    p_en = curves["p_en"].to_numpy(float)
    inner = np.arange(1, n_layers - 1)
    peak = float(p_en[inner].max())
    candidates = np.arange(max(2, (lc if lc is not None else 0) + 1), n_layers - 1)
    if not len(candidates):
        return None, "no layer left"
    if peak >= params.min_en_mass:
        hit = candidates[p_en[candidates] >= params.onset_frac * peak]
        if len(hit):
            return int(hit[0]), "english_onset"
    late = [d for d in sharp_drops(curves["entropy_bits"].to_numpy(float), params.drop_frac) if d in candidates]
    if len(late) > 1:
        return late[1], "entropy_second_drop"
    return (late[0], "entropy_fallback") if late else (int(candidates[len(candidates) // 2]), "entropy_fallback")


def current_rule(curves: pd.DataFrame, n_layers: int, alignment: pd.Series | None = None,
                 params: RuleParams = RuleParams(), lc: int | None = None, et: int | None = None) -> RuleAnswer:
    """Rules 1-4 and 6 of the module docstring; ``lc``/``et``: the user's layers, applied first."""
    et_by = "user override"
    if et is None:
        et, et_by = _english_onset(curves, n_layers, params, lc)
        if et is None:
            raise LayerError(f"No layer is left for the ET rule after LC {lc} (it needs LC < ET <= "
                             f"{n_layers - 2}); give --et-layer too.")
    if lc is not None:
        return RuleAnswer(lc, et, "user override", et_by)
    below = np.arange(1, et)
    if not len(below):
        raise LayerError(f"No layer is left for the LC rule below ET {et} (it needs 1 <= LC < ET); "
                         "give --lc-layer too.")
    if alignment is not None and alignment.notna().any():
        align = np.nan_to_num(alignment.reindex(range(n_layers)).to_numpy(float))
        return RuleAnswer(int(below[np.argmax(align[below] - align[below - 1])]), et, "alignment", et_by)
    entropy = curves["entropy_bits"].to_numpy(float)
    early = [d for d in sharp_drops(entropy, params.drop_frac) if 1 <= d < et]
    if early:
        return RuleAnswer(early[0], et, "entropy_first_drop", et_by)
    return RuleAnswer(int(below[np.argmin(np.diff(entropy)[below - 1])]), et, "entropy_steepest_drop", et_by)


def entropy_rule(curves: pd.DataFrame, n_layers: int, params: RuleParams = RuleParams(),
                 lc: int | None = None, et: int | None = None) -> RuleAnswer:
    """Rule 5 (Huo et al.'s first and second sharp entropy drop); None where a drop is missing."""
    drops = entropy_drops(curves["entropy_bits"].to_numpy(float), params.drop_frac)
    lc_by = et_by = "user override"
    if lc is None:
        below = [d for d in drops if et is None or d < et]
        lc, lc_by = (below[0], "entropy_first_drop") if below else (None, "no sharp drop")
    if et is None:
        after = [d for d in drops if lc is not None and d > lc]
        et, et_by = (after[0], "entropy_second_drop") if after else (None, "no second sharp drop")
    return RuleAnswer(lc, et, lc_by, et_by)


def rule_answers(curves: pd.DataFrame, n_layers: int, alignment: pd.Series | None = None,
                 params: RuleParams = RuleParams(), lc: int | None = None, et: int | None = None
                 ) -> dict[str, RuleAnswer]:
    """Every rule's answer (:data:`RULES`) with the user's layers applied first."""
    return {"current": current_rule(curves, n_layers, alignment, params, lc, et),
            "entropy": entropy_rule(curves, n_layers, params, lc, et)}


def measures(curves: pd.DataFrame, lc: int, et: int, params: RuleParams, alignment: pd.Series | None) -> dict:
    """The single numbers at the chosen layers that the evidence table and the provisional marks read."""
    p_en, entropy = curves["p_en"].to_numpy(float), curves["entropy_bits"].to_numpy(float)
    out = {"p_en_peak": round(float(p_en[1:-1].max()) if len(p_en) > 2 else float(p_en.max()), 4),
           "p_en_at_et": round(float(p_en[et]), 4), "p_target_at_et": round(float(curves["p_target"].iloc[et]), 4),
           "entropy_at_lc": round(float(entropy[lc]), 3), "entropy_at_et": round(float(entropy[et]), 3),
           "sharp_entropy_drops": entropy_drops(entropy, params.drop_frac)}
    if "p_input" in curves and np.isfinite(curves["p_input"].iloc[et]):
        out["p_input_at_et"] = round(float(curves["p_input"].iloc[et]), 4)
    if alignment is not None and alignment.notna().any() and lc >= 1:
        align = alignment.reindex(range(len(curves)))
        out["alignment_step_at_lc"] = [round(float(align.iloc[lc - 1]), 4), round(float(align.iloc[lc]), 4)]
    return out


def decide(curves: pd.DataFrame, n_layers: int, alignment: pd.Series | None, params: RuleParams, rule: str,
           lc: int | None = None, et: int | None = None) -> RuleAnswer:
    """The answer of the deciding ``rule`` with the user's layers applied first; where the entropy
    rule finds no drop, the current rule fills that layer in (``decided_by`` says so)."""
    answer = rule_answers(curves, n_layers, alignment, params, lc, et)[rule]
    if rule == "entropy" and (answer.lc is None or answer.et is None):  # fall back, signal by signal
        kept = {"lc": answer.lc if answer.lc is not None else lc, "et": answer.et if answer.et is not None else et}
        fallback = current_rule(curves, n_layers, alignment, params, kept["lc"], kept["et"])
        answer = RuleAnswer(fallback.lc, fallback.et,
                            answer.lc_by if answer.lc is not None else f"{fallback.lc_by} (no entropy drop)",
                            answer.et_by if answer.et is not None else f"{fallback.et_by} (no entropy drop)")
    return answer


def check_choosable(n_layers: int | None, lc: int | None = None, et: int | None = None) -> None:
    """The user's layers fit a model of ``n_layers`` blocks (None: unknown yet) and, unless both
    are given, the rule has the 4 blocks it needs. Raises LayerError; cheap, so callers run it
    before the model loads and before any measurement."""
    check_order(lc, et, n_layers)
    if n_layers is not None and n_layers < 4 and (lc is None or et is None):
        raise LayerError(f"Choosing LC < ET needs at least 4 layers; the model has {n_layers} "
                         "(give both --lc-layer and --et-layer).")


def choose_layers(curves: pd.DataFrame, n_layers: int, alignment: pd.Series | None = None,
                  params: RuleParams = RuleParams(), *, rule: str = "current", lc: int | None = None,
                  et: int | None = None, model: str = "", languages: tuple[str, ...] = ()) -> LayerChoice:
    """Apply the rule named ``rule`` (module docstring) with the user's ``lc``/``et`` first.

    ``curves``: per-layer ``p_en``, ``p_target``, ``entropy_bits`` (and ``p_input``), index
    ``0..n_layers-1`` (:func:`rule_curves`); ``alignment``: mean retrieval accuracy per layer
    or None. Returns a :class:`~dftlens.layers.LayerChoice` whose evidence records every
    rule's unconstrained answer (``rule_choice``), the overrides and the curves.

    Raises:
        LayerError: an unknown rule; a model under 4 blocks without both overrides; an
            override out of range, after the other, or leaving the rule no layer.
    """
    if rule not in RULES:
        raise LayerError(f"Unknown rule {rule!r}; use one of {', '.join(RULES)}.")
    check_choosable(n_layers, lc, et)
    free = rule_answers(curves, n_layers, alignment, params) if n_layers >= 4 else {}
    answer = (decide(curves, n_layers, alignment, params, rule, lc, et) if n_layers >= 4
              else RuleAnswer(lc, et, "user override", "user override"))
    curve_cols = [c for c in ("p_en", "p_target", "p_input", "entropy_bits") if c in curves]
    evidence = Evidence(
        rule=rule, lc_decided_by=answer.lc_by, et_decided_by=answer.et_by,
        rule_choice={name: {"lc": a.lc, "et": a.et} for name, a in free.items()},
        params=asdict(params), measures=measures(curves, answer.lc, answer.et, params, alignment),
        curves={c: [round(float(v), 4) for v in curves[c]] for c in curve_cols})
    if alignment is not None:
        evidence.curves["alignment"] = [round(float(v), 4) for v in alignment.reindex(range(n_layers))]
    choice = LayerChoice(model, n_layers, answer.lc, answer.et, tuple(languages), evidence)
    given = {"lc": lc, "et": et}
    return choice.with_layers(**given) if lc is not None or et is not None else choice
