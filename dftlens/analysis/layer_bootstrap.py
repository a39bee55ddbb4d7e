"""How sure is the layer choice? A bootstrap of the layer rules over items, and provisional marks.

The rules (:mod:`.layer_choice`) read curves averaged over items. To see how much the
chosen layers depend on which items happened to be measured, :func:`bootstrap_rules`
redraws each pair's items with replacement (Efron's bootstrap, resampling within each
(input, target) pair so every pair keeps its size and weight), recomputes the curves
exactly as :func:`~.layer_choice.rule_curves` does (including the per-pair choice of the
``correct`` subset) and applies every rule, ``RuleParams.n_resamples`` times (200) from
a seeded generator (``ProbeConfig.seed``). The alignment curve of the probes is held
fixed: the probes are measured on parallel sentences, not on the resampled items, so
an alignment-decided LC varies only through its bound ET.

For each layer the rule chose, ``evidence.support`` records the share of resamples that
chose each layer and the 2.5-97.5 percentile interval. :func:`provisional_reasons`
marks a choice ``provisional`` (one sentence per reason) when a rule-chosen layer was
picked in under ``min_support`` (60%) of the resamples, when P(English) at ET is under
``min_en_ratio`` (0.25) times the input language's probability there (a weak pivot),
when a pair the rule reads has fewer than ``min_items`` (16) items, or when no probes
ran and LC comes from the entropy curve alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..layer_evidence import Support
from ..layers import LayerChoice
from .layer_choice import RULES, RuleParams, decide, rule_answers
from .rule_items import PairItems, pair_items

def bootstrap_rules(pairs: list[PairItems], n_layers: int, alignment: pd.Series | None, params: RuleParams,
                    seed: int = 0, lc: int | None = None, et: int | None = None, rule: str = "current"
                    ) -> dict[str, dict[str, np.ndarray]]:
    """``{rule: {"lc": [n_resamples], "et": [n_resamples]}}``: each rule's layers on each resample
    (-1 where the rule had no answer), with the user's ``lc``/``et`` applied first; under
    ``"decided"`` the layers ``rule`` decides with its fallback (:func:`~.layer_choice.decide`)."""
    from ..errors import LayerError

    rng = np.random.default_rng(seed)
    draws = {name: {"lc": [], "et": []} for name in (*RULES, "decided")}
    for _ in range(params.n_resamples):
        parts = []
        for pair in pairs:
            rows, _ = pair.subset(rng.integers(0, pair.n_items, pair.n_items), params.min_correct_items)
            parts.append(pair.values[rows].mean(axis=0))
        curves = pairs[0].frame(np.mean(parts, axis=0))
        try:
            answers = rule_answers(curves, n_layers, alignment, params, lc, et)
            answers["decided"] = decide(curves, n_layers, alignment, params, rule, lc, et)
        except LayerError:  # an override leaves this resample's rule no layer
            answers = {}
        for name in draws:
            for signal in ("lc", "et"):
                layer = getattr(answers[name], signal) if name in answers else None
                draws[name][signal].append(-1 if layer is None else layer)
    return {name: {k: np.asarray(v) for k, v in d.items()} for name, d in draws.items()}


def support(layer: int, draws: np.ndarray) -> Support:
    """The share of resamples choosing each layer and the 2.5-97.5 percentile interval of ``draws``."""
    n = len(draws)
    found = draws[draws >= 0]
    layers, counts = np.unique(found, return_counts=True)
    shares = {int(l): float(c) / n for l, c in zip(layers, counts)}
    if len(found):
        interval = (int(np.quantile(found, 0.025, method="lower")), int(np.quantile(found, 0.975, method="higher")))
    else:
        interval = (layer, layer)
    return Support(int(layer), shares, interval, n)


def provisional_reasons(choice: LayerChoice, params: RuleParams, probes_ran: bool) -> list[str]:
    """Why ``choice`` is provisional (module docstring), one sentence per reason; [] when it is not."""
    ev, reasons = choice.evidence, []
    for signal, s in ev.support.items():
        if signal not in ev.overrides and s.share < params.min_support:
            reasons.append(f"{signal.upper()} layer {s.layer} was chosen in {s.share:.0%} of {s.n_resamples} "
                           f"bootstrap resamples (under {params.min_support:.0%}; interval {s.interval[0]}-"
                           f"{s.interval[1]}).")
    p_en, p_in = ev.measures.get("p_en_at_et"), ev.measures.get("p_input_at_et")
    if p_en is not None and p_in is not None and p_en < params.min_en_ratio * p_in:
        reasons.append(f"At ET (layer {choice.et_layer}) P(English) {p_en:.3g} is under {params.min_en_ratio:g} x "
                       f"P(input language) {p_in:.3g}: a weak English pivot.")
    small = [s for s in ev.rule_subsets if s.get("n_items") is not None and s["n_items"] < params.min_items]
    if small and len(ev.overrides) < 2:
        names = ", ".join(f"{s['pair']} ({s['n_items']})" for s in small)
        reasons.append(f"Too few items to decide: {names} under {params.min_items} per pair.")
    if not probes_ran and "lc" not in ev.overrides and ev.rule == "current":
        reasons.append("No probes ran: LC comes from the entropy curve alone (run with --probes).")
    if ev.rule == "entropy" and "no entropy drop" in f"{ev.lc_decided_by} {ev.et_decided_by}":
        reasons.append("The entropy rule found fewer than two sharp drops; the current rule filled in.")
    return reasons


def assess(choice: LayerChoice, lens_items: pd.DataFrame, alignment: pd.Series | None,
           params: RuleParams = RuleParams(), *, seed: int = 0, causal: dict | None = None,
           inputs: dict | None = None) -> LayerChoice:
    """``choice`` with its bootstrap ``support``, every evidence kind's ``readings``
    (:mod:`.evidence_kinds`), ``causal`` and the ``provisional`` reasons added to its evidence.

    ``lens_items``: the probe's per-item rows (the same the rule's curves came from);
    ``alignment``: the probes' mean retrieval accuracy per layer, or None when no probes ran.
    """
    from dataclasses import replace

    from .evidence_kinds import KindContext, read_all
    from .layer_choice import rule_curves

    ev, n_layers = choice.evidence, choice.n_layers
    given = {"lc": ev.overrides.get("lc"), "et": ev.overrides.get("et")}
    pairs = pair_items(lens_items)
    if n_layers < 4:  # both layers were given; the rules cannot run on so few blocks
        ctx = KindContext(n_layers, pd.DataFrame(), alignment, {}, {}, causal, dict(inputs or {}))
        evidence = ev.but(readings=read_all(ctx), causal=causal)
        return replace(choice, evidence=evidence.but(provisional=tuple(provisional_reasons(
            replace(choice, evidence=evidence), params, alignment is not None))))
    free = bootstrap_rules(pairs, n_layers, alignment, params, seed, rule=ev.rule)
    constrained = free if given == {"lc": None, "et": None} else bootstrap_rules(
        pairs, n_layers, alignment, params, seed, rule=ev.rule, **given)
    sup = {s: support(choice.layer(s), constrained["decided"][s]) for s in ("lc", "et") if given[s] is None}
    curves = rule_curves(lens_items, params.min_correct_items)[0]
    ctx = KindContext(n_layers, curves, alignment, rule_answers(curves, n_layers, alignment, params), free,
                      causal, dict(inputs or {}))
    evidence = ev.but(support=sup, readings=read_all(ctx), causal=causal)
    reasons = provisional_reasons(replace(choice, evidence=evidence), params, alignment is not None)
    return replace(choice, evidence=evidence.but(provisional=tuple(reasons)))
