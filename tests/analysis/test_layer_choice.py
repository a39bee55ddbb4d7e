"""The layer rules on synthetic curves, overrides, LayerChoice invariants and layers.json round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from dftlens.analysis.layer_choice import check_choosable, choose_layers, entropy_drops, sharp_drops
from dftlens.errors import DataError, LayerError
from dftlens.layer_evidence import Evidence
from dftlens.layers import LayerChoice

N = 32


def llama_like_curves() -> pd.DataFrame:
    """Wendler's Llama-2 picture: entropy high, drops at 2 and ~15; English mid, target late."""
    layers = np.arange(N)
    entropy = np.where(layers < 2, 14.0, np.where(layers < 15, 12.0, 3.0))
    p_en = np.where((layers >= 15) & (layers < 27), 0.35, 0.01)
    p_target = np.where(layers >= 27, 0.6, 0.0)
    return pd.DataFrame({"p_en": p_en, "p_target": p_target, "entropy_bits": entropy}, index=layers)


def test_sharp_drops():
    assert sharp_drops(llama_like_curves()["entropy_bits"].to_numpy(), 0.2) == [2, 15]


def test_entropy_drops_are_runs_placed_at_their_largest_fall_and_skip_the_last_block():
    h = np.array([10, 10, 8, 5, 5, 5, 5, 2, 2, 0.0])  # falls 2 and 3 at layers 2-3, 3 at 7; last block 2
    assert entropy_drops(h, 0.2) == [3, 7]  # one drop at 2-3 (largest fall at 3), one at 7; layer 9 left out
    assert entropy_drops(np.full(8, 4.0), 0.2) == []  # a flat curve has no drop


def test_rule_on_llama_like_curves_without_probes():
    choice = choose_layers(llama_like_curves(), N)
    assert (choice.lc_layer, choice.et_layer) == (2, 15)
    assert choice.evidence.lc_decided_by == "entropy_first_drop"
    assert choice.evidence.et_decided_by == "english_onset"


def test_alignment_decides_lc_when_probes_ran():
    align = pd.Series(np.where(np.arange(N) < 6, 0.1, 0.8) + np.arange(N) * 0.001)  # steps up at layer 6
    choice = choose_layers(llama_like_curves(), N, alignment=align)
    assert (choice.lc_layer, choice.et_layer, choice.evidence.lc_decided_by) == (6, 15, "alignment")


def test_no_english_pivot_falls_back_to_entropy():
    curves = llama_like_curves().assign(p_en=0.0)
    curves.loc[22:, "entropy_bits"] = 1.0  # a second drop
    choice = choose_layers(curves, N)
    assert choice.evidence.et_decided_by == "entropy_second_drop" and (choice.lc_layer, choice.et_layer) == (2, 15)


def test_entropy_rule_decides_with_rule_entropy_and_every_rule_is_recorded():
    curves = llama_like_curves()
    curves.loc[:, "p_en"] = np.where(np.arange(N) >= 9, 0.35, 0.01)  # English onset at 9, drops at 2 and 15
    align = pd.Series(np.where(np.arange(N) < 5, 0.1, 0.8))
    current = choose_layers(curves, N, align)
    paper = choose_layers(curves, N, align, rule="entropy")
    assert (current.lc_layer, current.et_layer) == (5, 9)
    assert (paper.lc_layer, paper.et_layer) == (2, 15) and paper.evidence.rule == "entropy"
    assert paper.evidence.et_decided_by == "entropy_second_drop"
    assert paper.evidence.rule_choice == current.evidence.rule_choice == {
        "current": {"lc": 5, "et": 9}, "entropy": {"lc": 2, "et": 15}}


def test_entropy_rule_without_a_second_drop_falls_back_to_the_current_rule():
    curves = llama_like_curves()
    curves["entropy_bits"] = np.where(np.arange(N) < 2, 14.0, 12.0)  # one drop only
    choice = choose_layers(curves, N, rule="entropy")
    assert (choice.lc_layer, choice.et_layer) == (2, 15)
    assert choice.evidence.et_decided_by == "english_onset (no entropy drop)"


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rule", ["current", "entropy"])
def test_rule_always_orders_layers(seed, rule):
    rng = np.random.default_rng(seed)
    curves = pd.DataFrame({"p_en": rng.random(N) * 0.2, "p_target": rng.random(N),
                           "entropy_bits": rng.random(N) * 10})
    choice = choose_layers(curves, N, alignment=pd.Series(rng.random(N)), rule=rule)
    assert 0 < choice.lc_layer < choice.et_layer < N - 1


def test_overrides_apply_before_the_rule_and_are_recorded():
    layers = np.arange(N)
    align = pd.Series(0.1 + 0.2 * (layers >= 6) + 0.5 * (layers >= 13))  # rises at 6, and more at 13
    choice = choose_layers(llama_like_curves(), N, align, et=12)
    assert (choice.lc_layer, choice.et_layer) == (6, 12)  # LC searched below the given ET
    assert choice.evidence.overrides == {"et": 12} and choice.evidence.et_decided_by == "user override"
    assert choice.evidence.rule_choice["current"] == {"lc": 13, "et": 15}  # the rule's own answer stays
    later = choose_layers(llama_like_curves(), N, lc=20)
    assert later.lc_layer == 20 and later.et_layer > 20  # ET searched above the given LC
    with pytest.raises(LayerError, match="out of range"):
        choose_layers(llama_like_curves(), N, et=40)
    with pytest.raises(LayerError, match="must come before"):
        choose_layers(llama_like_curves(), N, lc=20, et=10)
    with pytest.raises(LayerError, match="No layer is left for the ET rule"):
        choose_layers(llama_like_curves(), N, lc=30)


def test_a_two_block_model_with_both_layers_is_accepted():
    """Issue 18 item 18: explicit layers apply before the rule, so its 4-block minimum does not bite."""
    curves = llama_like_curves().iloc[:2]
    choice = choose_layers(curves, 2, lc=0, et=1)
    assert (choice.lc_layer, choice.et_layer) == (0, 1) and choice.evidence.overrides == {"lc": 0, "et": 1}
    check_choosable(2, 0, 1)
    with pytest.raises(LayerError, match="needs at least 4 layers"):
        check_choosable(2, 0, None)


def test_layer_choice_invariants():
    with pytest.raises(LayerError, match=r"The LC layer \(blocks.5.hook_resid_post\) must come before the ET "
                                         r"layer \(blocks.5.hook_resid_post\)"):
        LayerChoice("m", 8, 5, 5)
    LayerChoice("m", 8, 5, 5, lc_site="resid_mid", et_site="resid_post")  # mid comes before post
    with pytest.raises(LayerError, match="out of range"):
        LayerChoice("m", 8, 1, 8)
    choice = LayerChoice("m", 8, 1, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        choice.lc_layer = 2
    moved = choice.with_layers(et=6, lc_site="resid_mid")
    assert (moved.et_layer, moved.lc_site, moved.evidence.overrides) == (6, "resid_mid", {"et": 6})
    assert moved.hooks == {"lc": "blocks.1.hook_resid_mid", "et": "blocks.6.hook_resid_post"}
    assert choice.et_layer == 5  # the original is unchanged
    with pytest.raises(LayerError, match="must come before"):
        choice.with_layers(lc=7)
    assert choice.without("lc").hooks == {"et": "blocks.5.hook_resid_post"}


def test_bind_checks_the_model(tiny_models):
    lm = tiny_models["llama"]
    assert LayerChoice("tiny", lm.n_layers, 1, 2).bind(lm).lc_layer == 1
    with pytest.raises(LayerError, match="written for a model with 8 layers"):
        LayerChoice("tiny", 8, 1, 2).bind(lm)


def test_layers_json_round_trip_keeps_the_typed_evidence(tmp_path):
    choice = choose_layers(llama_like_curves(), N, model="m", languages=("en", "zh")).with_layers(lc=3)
    choice.save(tmp_path / "layers.json")
    again = LayerChoice.load(tmp_path / "layers.json")
    assert again == choice and isinstance(again.evidence, Evidence)
    assert again.hooks == {"lc": "blocks.3.hook_resid_post", "et": "blocks.15.hook_resid_post"}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="has no .hooks."):
        LayerChoice.load(tmp_path / "bad.json")


def test_older_evidence_layout_is_read_into_the_typed_fields():
    old = {"rule": {"onset_frac": 0.5}, "p_en_peak": 0.2, "lc_decided_by": "user override", "lc_rule_choice": 2,
           "et_decided_by": "english_onset", "curves": {"p_en": [0.1]}, "something_else": 1}
    ev = Evidence.from_dict(old)
    assert (ev.rule, ev.params, ev.measures["p_en_peak"]) == ("current", {"onset_frac": 0.5}, 0.2)
    assert ev.rule_choice == {"current": {"lc": 2}} and ev.extra == {"something_else": 1}
    assert ev.to_dict()["something_else"] == 1
