"""The overlap-sensitivity line: peak P(en) per pair and policy from one lens table, and its report section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dftlens.analysis.overlap_report import overlap_sensitivity, policy_choices
from dftlens.analysis.probe_run import overlap_evidence
from dftlens.layer_evidence import Evidence
from dftlens.viz.overlap_section import overlap_section, sensitivity_table


def _items() -> pd.DataFrame:
    rows = []
    for item, (excl, drop, keep) in {"a": (0.1, np.nan, 0.3), "b": (0.2, 0.2, 0.2), "c": (0.3, np.nan, np.nan)}.items():
        for layer in range(4):
            scale = [0.1, 0.5, 1.0, 0.2][layer]
            rows.append({"task": "translation", "input_lang": "fr", "target_lang": "zh", "item_id": item,
                         "layer": layer, "p_en": excl * scale, "p_target": 0.1 * layer, "entropy_bits": 8 - layer,
                         "correct": True, "p_en_exclusive": excl * scale, "p_en_drop": drop * scale,
                         "p_en_keep": keep * scale})
    return pd.DataFrame(rows)


def test_sensitivity_counts_kept_items_and_finds_each_policys_peak():
    table = overlap_sensitivity(_items()).set_index("policy")
    assert table.loc["exclusive", "n_items"] == 3 and table.loc["drop", "n_items"] == 1
    assert table.loc["keep", "n_items"] == 2
    assert abs(table.loc["exclusive", "peak_p_en"] - 0.2) < 1e-12 and table.loc["exclusive", "peak_layer"] == 2
    assert abs(table.loc["drop", "peak_p_en"] - 0.2) < 1e-12
    assert abs(table.loc["keep", "peak_p_en"] - 0.25) < 1e-12
    assert overlap_sensitivity(_items().drop(columns="p_en_keep")).empty


def test_policy_choices_run_the_rule_per_policy():
    choices = policy_choices(_items(), n_layers=4)
    assert [c["policy"] for c in choices] == ["exclusive", "drop", "keep"]
    assert all(0 <= c["lc"] < c["et"] < 4 for c in choices)


def test_report_section_shows_one_line_per_pair_and_policy():
    items = _items()
    table = sensitivity_table(overlap_sensitivity(items).to_dict(orient="records"), policy_choices(items, n_layers=4))
    assert list(table.columns) == ["pair", "exclusive", "drop", "keep"]
    assert table.iloc[0]["drop"] == "0.200 @L2 (n=1)"
    assert table.iloc[1].to_dict() == {"pair": "layer rule LC / ET", "exclusive": "1 / 2", "drop": "1 / 2",
                                       "keep": "1 / 2"}
    # the section reads layers.json's evidence as the probe writes it
    evidence = Evidence(overlap=overlap_evidence("exclusive", items, n_layers=4)).to_dict()
    html = overlap_section(evidence)
    assert "Overlap policy <b>exclusive</b>:" in html and "n=3" in html and "&lt;0xE7&gt;" in html
    assert "<td>layer rule LC / ET</td>" in html
    assert overlap_section(Evidence().to_dict()) == "" and overlap_section({}) == ""
