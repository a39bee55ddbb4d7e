"""The bootstrap of the layer rules, provisional marks and the evidence kinds, on synthetic items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dftlens.analysis.evidence_kinds import KINDS, choice_line, disagreements, evidence_line
from dftlens.analysis.layer_bootstrap import assess, bootstrap_rules, support
from dftlens.analysis.rule_items import pair_items
from dftlens.analysis.layer_choice import RuleParams, choose_layers, rule_curves

N = 12


def items(n_items=24, onset=6, spread=0, p_input=0.05, p_en=0.4, seed=0, pairs=(("fr", "zh"), ("de", "ja"))):
    """Per-item lens rows: English rises at ``onset`` (each item's own onset jittered by ``spread`` layers),
    entropy drops at 3 and 8, P(input) constant."""
    rng = np.random.default_rng(seed)
    rows = []
    for src, tgt in pairs:
        for item in range(n_items):
            own = onset + (rng.integers(-spread, spread + 1) if spread else 0)
            for layer in range(N):
                rows.append({"task": "translation", "input_lang": src, "target_lang": tgt, "item_id": item,
                             "layer": layer, "p_en": p_en if own <= layer < N - 1 else 0.01,
                             "p_target": 0.7 if layer == N - 1 else 0.0, "p_input": p_input,
                             "entropy_bits": 10.0 - 3 * (layer >= 3) - 4 * (layer >= 8) + rng.normal(0, 0.01),
                             "correct": True})
    return pd.DataFrame(rows)


def decide(lens_items, alignment=None, **kw):
    params = RuleParams()
    curves, subsets = rule_curves(lens_items, params.min_correct_items)
    choice = choose_layers(curves, N, alignment, params, **kw)
    choice = choice.with_layers()  # no-op: the choice as run_probe builds it
    from dataclasses import replace

    choice = replace(choice, evidence=choice.evidence.but(rule_subsets=subsets))
    return assess(choice, lens_items, alignment, params, seed=0)


ALIGN = pd.Series(np.where(np.arange(N) < 4, 0.2, 0.9))  # the probes' step at layer 4


def test_pair_items_shape_and_rule_curves_agree_with_pandas():
    lens_items = items(spread=2)
    pairs = pair_items(lens_items)
    assert [p.name for p in pairs] == ["de->ja", "fr->zh"] and pairs[0].values.shape == (24, N, 4)
    curves, used = rule_curves(lens_items)
    expected = lens_items.groupby(["input_lang", "layer"])["p_en"].mean().groupby("layer").mean()
    np.testing.assert_allclose(curves["p_en"].to_numpy(), expected.to_numpy())
    assert used[0] == {"pair": "de->ja", "subset": "correct", "n_items": 24, "n_correct": 24, "n_all": 24}


def test_bootstrap_is_deterministic_and_clear_curves_have_full_support():
    choice = decide(items(), ALIGN)
    assert (choice.lc_layer, choice.et_layer) == (4, 6)
    assert choice.evidence.support["et"].shares == {6: 1.0} and choice.evidence.support["et"].interval == (6, 6)
    assert choice.evidence.support["lc"].share == 1.0 and not choice.provisional
    again = decide(items(), ALIGN)
    assert again.evidence.support == choice.evidence.support


def test_bootstrap_spreads_over_the_layers_items_disagree_on():
    lens_items = items(spread=3, n_items=20, seed=3)
    pairs = pair_items(lens_items)
    params = RuleParams(n_resamples=300)
    draws = bootstrap_rules(pairs, N, ALIGN, params, seed=1)["current"]["et"]
    assert np.array_equal(draws, bootstrap_rules(pairs, N, ALIGN, params, seed=1)["current"]["et"])
    assert not np.array_equal(draws, bootstrap_rules(pairs, N, ALIGN, params, seed=2)["current"]["et"])
    s = support(int(np.bincount(draws).argmax()), draws)
    assert len(s.shares) > 1 and abs(sum(s.shares.values()) - 1) < 1e-9
    lo, hi = s.interval
    assert lo < hi and lo <= s.layer <= hi
    inside = np.mean((draws >= lo) & (draws <= hi))
    assert inside >= 0.95  # a 95% percentile interval covers at least 95% of the resamples


def test_provisional_reasons():
    small = decide(items(n_items=8), None)  # few items, no probes
    reasons = " ".join(small.provisional)
    assert "Too few items to decide: de->ja (8), fr->zh (8) under 16" in reasons
    assert "No probes ran" in reasons
    weak = decide(items(p_en=0.1, p_input=0.8), ALIGN)  # P(en) 0.1 at ET against P(input) 0.8
    assert any("weak English pivot" in r for r in weak.provisional)
    unsure = decide(items(spread=3, n_items=20, seed=3), ALIGN)
    assert any("bootstrap resamples (under 60%" in r for r in unsure.provisional)
    assert "is provisional" in unsure.warning()
    given = decide(items(n_items=8), None, lc=2, et=9)  # both layers given: no rule, no small-run mark
    assert not any("Too few" in r or "No probes" in r for r in given.provisional)


def test_every_kind_reads_and_disagreement_is_said():
    choice = decide(items(), ALIGN)
    kinds = {(r.kind, r.signal): r for r in choice.evidence.readings}
    # causal, neurons and steering read other runs (--causal, --neurons DIR, --steering DIR)
    assert set(KINDS) - {"causal", "neurons", "steering"} <= {k for k, _ in kinds}
    assert kinds["english_onset", "et"].layer == 6 and kinds["alignment", "lc"].layer == 4
    assert (kinds["entropy", "lc"].layer, kinds["entropy", "et"].layer) == (3, 8)
    said = disagreements(choice.evidence.readings, choice.lc_layer, choice.et_layer)
    assert said == ["entropy drops (Huo et al.) points to LC 3 (interval 3-3), not 4.",
                    "entropy drops (Huo et al.) points to ET 8 (interval 8-8), not 6."]
    assert "chosen in 100% of 200 resamples" in choice_line(choice)
    assert "entropy ET 8" in evidence_line(choice)


def test_causal_reading_becomes_a_kind():
    causal = {"concept_transfer_layers": [5, 7], "src_concept_peak_layer": 6, "output_language_switch": 4}
    params = RuleParams()
    curves, _ = rule_curves(items())
    choice = assess(choose_layers(curves, N, ALIGN, params), items(), ALIGN, params, causal=causal)
    readings = {(r.kind, r.signal): r for r in choice.evidence.readings}
    assert readings["causal", "window"].interval == (5, 7) and readings["causal", "switch"].layer == 4
    assert choice.evidence.causal == causal


@pytest.mark.parametrize("rule", ["current", "entropy"])
def test_support_is_for_the_rule_that_decided(rule):
    choice = decide(items(), ALIGN, rule=rule)
    assert choice.evidence.support["et"].layer == choice.et_layer


def test_support_of_a_layer_the_current_rule_filled_in_for_the_entropy_rule():
    one_drop = items().assign(entropy_bits=lambda f: 10.0 - 3 * (f["layer"] >= 3))  # no second drop
    choice = decide(one_drop, ALIGN, rule="entropy")
    assert choice.et_layer == 6 and choice.evidence.et_decided_by == "english_onset (no entropy drop)"
    assert choice.evidence.support["et"].share == 1.0  # the resamples decide as the run did, fallback included
    assert any("fewer than two sharp drops" in r for r in choice.provisional)
