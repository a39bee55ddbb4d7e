"""The layer rule on synthetic curves, overrides, and layers.json round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dftlens.analysis.layer_choice import LayerChoice, apply_overrides, choose_layers, sharp_drops
from dftlens.errors import DataError, LayerError

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


def test_rule_on_llama_like_curves_without_probes():
    lc, et, ev = choose_layers(llama_like_curves(), N)
    assert (lc, et) == (2, 15)
    assert ev["lc_decided_by"] == "entropy_first_drop" and ev["et_decided_by"] == "english_onset"


def test_alignment_decides_lc_when_probes_ran():
    align = pd.Series(np.where(np.arange(N) < 6, 0.1, 0.8) + np.arange(N) * 0.001)  # steps up at layer 6
    lc, et, ev = choose_layers(llama_like_curves(), N, alignment=align)
    assert et == 15 and ev["lc_decided_by"] == "alignment"
    assert lc == 6 and 0 < lc < et


def test_no_english_pivot_falls_back_to_entropy():
    curves = llama_like_curves().assign(p_en=0.0)
    curves.loc[22:, "entropy_bits"] = 1.0  # a second drop
    lc, et, ev = choose_layers(curves, N)
    assert ev["et_decided_by"] == "entropy_second_drop" and et == 15 and lc == 2


@pytest.mark.parametrize("seed", range(5))
def test_rule_always_orders_layers(seed):
    rng = np.random.default_rng(seed)
    curves = pd.DataFrame({"p_en": rng.random(N) * 0.2, "p_target": rng.random(N),
                           "entropy_bits": rng.random(N) * 10})
    lc, et, _ = choose_layers(curves, N, alignment=pd.Series(rng.random(N)))
    assert 0 < lc < et < N - 1


def test_overrides_are_checked():
    ev = {}
    assert apply_overrides(2, 15, ev, N, 4, None) == (4, 15) and ev["lc_decided_by"] == "user override"
    with pytest.raises(LayerError, match="out of range"):
        apply_overrides(2, 15, {}, N, None, 40)
    with pytest.raises(LayerError, match="must come before"):
        apply_overrides(2, 15, {}, N, 20, None)


def test_layers_json_round_trip(tmp_path):
    choice = LayerChoice("m", N, 3, 15, ["en", "zh"], {"et_decided_by": "english_onset"})
    choice.save(tmp_path / "layers.json")
    again = LayerChoice.load(tmp_path / "layers.json")
    assert again.hooks == {"lc": "blocks.3.hook_resid_post", "et": "blocks.15.hook_resid_post"}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="has no .hooks."):
        LayerChoice.load(tmp_path / "bad.json")
