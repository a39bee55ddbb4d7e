"""Figures and report.html, built from synthetic lens / probe tables (no model needed)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dftlens.viz.figures import (
    compare_latent_figure,
    entropy_figure,
    latent_language_figure,
    probe_figure,
    token_share_figure,
)
from dftlens.layer_evidence import Evidence
from dftlens.layers import LayerChoice
from dftlens.viz.report import evidence_rows, write_report

N_LAYERS = 12
def rule_choice() -> LayerChoice:
    """The layer choice as the probe builds it: the layer rule and its bootstrap on synthetic per-item curves
    (English from layer 8, the probes' alignment step at 2, entropy drops at 3 and 9)."""
    from dftlens.analysis.layer_bootstrap import assess
    from dftlens.analysis.layer_choice import RuleParams, choose_layers, rule_curves

    rng = np.random.default_rng(0)
    items = pd.DataFrame([
        {"task": "translation", "input_lang": "fr", "target_lang": "zh", "item_id": item, "layer": layer,
         "p_en": (0.6 if 8 <= layer < N_LAYERS - 1 else 0.0) + rng.uniform(0, 0.01),
         "p_target": 0.8 if layer == N_LAYERS - 1 else 0.0, "p_input": 0.05,
         "entropy_bits": 10.0 - 3 * (layer >= 3) - 4 * (layer >= 9), "correct": True}
        for item in range(20) for layer in range(N_LAYERS)])
    alignment = pd.Series(np.where(np.arange(N_LAYERS) < 2, 0.2, 0.9))
    params = RuleParams()
    curves, subsets = rule_curves(items)
    choice = choose_layers(curves, N_LAYERS, alignment, params, model="tiny-test-model", languages=("en", "fr", "zh"))
    counts = [{"task": "translation", "input_lang": "fr", "target_lang": "zh", "built": 150, "dropped_overlap": 4,
               "used": 30}]
    choice = replace(choice, evidence=choice.evidence.but(rule_subsets=subsets, prompt_counts=counts))
    return assess(choice, items, alignment, params)


RULE_CHOICE = rule_choice()
CHOICE = RULE_CHOICE.to_dict()  # layers.json as the figures read it
assert (CHOICE["lc_layer"], CHOICE["et_layer"]) == (2, 8)


def make_lens(pairs=(("fr", "zh"), ("de", "ja"), ("en", "zh")), tasks=("translation", "repetition"),
              n_layers=N_LAYERS, n_items=30) -> pd.DataFrame:
    rows = []
    for task in tasks:
        for src, tgt in pairs:
            if task == "repetition":
                src = tgt
            for layer in range(n_layers):
                t = layer / (n_layers - 1)
                p_en = 0.6 * math.exp(-(((t - 0.65) / 0.15) ** 2))
                p_tgt = 0.8 / (1 + math.exp(-(t - 0.9) * 30))
                has_input = src not in ("en", tgt)
                p_in = 0.05 * (1 - t) if has_input else np.nan
                ent = 12 * (1 - t) + 1
                rows.append({
                    "task": task, "input_lang": src, "target_lang": tgt, "layer": layer, "n_items": n_items,
                    "p_en": p_en, "p_en_lo": max(0, p_en - 0.05), "p_en_hi": p_en + 0.05,
                    "p_target": p_tgt, "p_target_lo": max(0, p_tgt - 0.05), "p_target_hi": min(1, p_tgt + 0.05),
                    "p_input": p_in, "p_input_lo": p_in * 0.5, "p_input_hi": p_in * 1.5,
                    "entropy_bits": ent, "entropy_bits_lo": ent - 0.3, "entropy_bits_hi": ent + 0.3,
                    "share_en": p_en, "share_target": 0.5 * p_tgt, "share_input": 0.1 if has_input else 0.0,
                    "share_other": 0.9 - p_en - 0.5 * p_tgt,
                })
    return pd.DataFrame(rows).drop_duplicates(["task", "input_lang", "target_lang", "layer"])


def make_probes(n_layers=N_LAYERS) -> pd.DataFrame:
    """The probe table's shape: lang-id rows with control, baseline and selectivity (and its CI);
    retrieval rows per language pair with centred / un-centred accuracy and cosine margin."""
    rows = []
    for layer in range(n_layers):
        for probe in ("lang_id_all", "lang_id_latin"):
            v = 0.5 + 0.4 * layer / n_layers
            rows.append({"layer": layer, "probe": probe, "metric": "accuracy", "value": v, "ci_low": v - 0.05,
                         "ci_high": v + 0.05, "control": 0.3, "baseline": 0.12, "selectivity": v - 0.3,
                         "selectivity_ci_low": v - 0.35, "selectivity_ci_high": v - 0.25, "lang_pair": np.nan,
                         "n": 400})
        for pair in ("zh-en", "ja-en"):
            v = 0.2 + 0.6 * math.sin(math.pi * layer / n_layers)
            for metric, value in (("accuracy", v), ("accuracy_uncentred", v / 2), ("cos_margin", v / 5),
                                  ("cos_margin_uncentred", v / 10)):
                rows.append({"layer": layer, "probe": "retrieval", "metric": metric, "value": value,
                             "ci_low": value - 0.05, "ci_high": value + 0.05, "control": np.nan,
                             "baseline": 0.01 if metric.startswith("acc") else 0.0, "selectivity": np.nan,
                             "lang_pair": pair, "n": 100})
    return pd.DataFrame(rows)


def bands(fig: go.Figure) -> list:
    return [t for t in fig.data if t.fill == "toself"]


def lines(fig: go.Figure) -> list:
    return [t for t in fig.data if t.fill != "toself"]


def vline_layers(fig: go.Figure) -> set[float]:
    return {s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1}


def texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# ------------------------------------------------------------------ latent language


def test_latent_language_facets_bands_and_markers():
    lens = make_lens()
    fig = latent_language_figure(lens, choice=CHOICE)
    facets = [t for t in texts(fig) if "→" in t]
    # translation fr->zh, de->ja, en->zh and repetition zh->zh, ja->ja
    assert len(facets) == 5
    assert any("translation: fr → zh (n=30)" in t for t in facets)
    # Every drawn line has its CI band.
    names = [t.name for t in lines(fig)]
    assert names.count("P(English)") == 5 and names.count("P(target)") == 5
    assert names.count("P(input)") == 2  # fr->zh and de->ja only (en->zh and repetitions have none)
    assert names.count("entropy (bits)") == 5
    assert len(bands(fig)) == len(lines(fig))
    for band in bands(fig):
        assert band.fillcolor.startswith("rgba(") and band.hoverinfo == "skip"
    # LC and ET marked and labelled in each facet.
    assert vline_layers(fig) == {2, 8}
    assert texts(fig).count("LC 2") == 5 and texts(fig).count("ET 8") == 5
    # Hover carries n_items; legend shows each role once.
    assert all("n_items" in t.hovertemplate for t in lines(fig))
    assert sum(1 for t in lines(fig) if t.showlegend) == 4
    assert "tiny-test-model" in fig.layout.title.text
    # Probability panels run 0..1; entropy rows share one explicit range that fits their data
    # (13.3 bits is the top of the CI); no y axis is matched to another.
    prob_axes = [a for k, a in fig.layout.to_plotly_json().items() if k.startswith("yaxis")
                 and a.get("title", {}).get("text") == "probability"]
    ent_axes = [a for k, a in fig.layout.to_plotly_json().items() if k.startswith("yaxis")
                and "entropy" in a.get("title", {}).get("text", "")]
    assert len(prob_axes) == 5 and len(ent_axes) == 5
    assert all(tuple(a["range"]) == (0.0, 1.0) for a in prob_axes)
    assert all(a["range"][0] == 0 and 13.3 <= a["range"][1] <= 14.0 for a in ent_axes)
    assert not any(a.get("matches") for a in prob_axes + ent_axes)
    auto = latent_language_figure(lens, prob_axis="auto").layout.yaxis.range
    assert auto[0] == 0 and 0.6 < auto[1] < 0.9  # up to the largest CI bound (0.85) plus a margin
    log_fig = latent_language_figure(lens, prob_axis="log")
    log = log_fig.layout.yaxis
    # The smallest mass is 4e-9: the view stops at 1e-6 and draws smaller values at that edge.
    assert log.type == "log" and tuple(log.range) == (-6, 0) and "≤1e-6 on the edge" in log.title.text
    assert min(min(v for v in t.y if v is not None) for t in log_fig.data) == pytest.approx(1e-6)
    assert log.exponentformat == "power"  # 10^-4, not the SI "100μ"
    zero = lens.copy()
    zero.loc[zero.index[0], "p_en"] = 0.0
    en = next(t for t in latent_language_figure(zero, prob_axis="log").data if t.name == "P(English)")
    assert sum(v is None or v != v for v in en.y) == 1  # the exact zero is a gap, not a point on the edge
    with pytest.raises(ValueError, match="prob_axis"):
        latent_language_figure(lens, prob_axis="sqrt")


def test_latent_language_target_english_has_no_duplicate_line():
    lens = make_lens(pairs=(("fr", "en"),), tasks=("translation",))
    fig = latent_language_figure(lens)
    assert [t.name for t in lines(fig)] == ["P(English)", "P(input)", "entropy (bits)"]


def test_latent_language_filters_task_and_pairs():
    lens = make_lens()
    fig = latent_language_figure(lens, task="translation", pairs=[("fr", "zh"), "de:ja"])
    assert sorted(t for t in texts(fig) if "→" in t) == sorted(
        ["<b>translation: fr → zh (n=30)</b>", "<b>translation: de → ja (n=30)</b>"])
    empty = latent_language_figure(lens, task="cloze")
    assert "No lens rows" in texts(empty)[0]


def test_latent_language_without_optional_columns():
    lens = make_lens(tasks=("translation",))
    optional = [c for c in lens.columns if c.endswith(("_lo", "_hi")) or c.startswith(("p_input", "share_"))]
    bare = lens.drop(columns=optional + ["n_items"])
    fig = latent_language_figure(bare, choice=None)
    assert not bands(fig)
    assert not fig.layout.shapes
    assert {t.name for t in lines(fig)} == {"P(English)", "P(target)", "entropy (bits)"}
    assert all("n_items" not in t.hovertemplate for t in lines(fig))
    assert token_share_figure(bare) is None
    # Entropy row can be switched off.
    no_ent = latent_language_figure(bare, entropy=False)
    assert "entropy (bits)" not in {t.name for t in no_ent.data}


def test_choice_object_with_to_dict_and_nan_layers():
    class Choice:
        def to_dict(self):
            return {"lc_layer": 3, "et_layer": 7, "n_layers": N_LAYERS}

    fig = latent_language_figure(make_lens(tasks=("translation",)), choice=Choice())
    assert vline_layers(fig) == {3, 7}
    partial = entropy_figure(make_lens(), choice={"lc_layer": 4, "et_layer": float("nan")})
    assert vline_layers(partial) == {4}


# ------------------------------------------------------------------ other figures


def test_entropy_figure_one_line_per_facet():
    fig = entropy_figure(make_lens(), choice=CHOICE)
    assert len(lines(fig)) == 5 and len(bands(fig)) == 5
    # One panel per task, each with its own legend; colours differ within a panel.
    assert [a.text for a in fig.layout.annotations][:2] == ["translation", "repetition"]
    per_legend = {}
    for t in lines(fig):
        per_legend.setdefault(t.legend or "legend", []).append(t.line.color)
    assert sorted(len(v) for v in per_legend.values()) == [2, 3]
    assert all(len(set(v)) == len(v) for v in per_legend.values())
    # The older CI column names (entropy_lo / entropy_hi) work too.
    legacy = make_lens().rename(columns={"entropy_bits_lo": "entropy_lo", "entropy_bits_hi": "entropy_hi"})
    assert len(bands(entropy_figure(legacy))) == 5
    assert vline_layers(fig) == {2, 8}
    assert fig.layout.yaxis.title.text == "entropy (bits)"


def test_token_share_figure_stacked():
    lens = make_lens(tasks=("translation",))
    fig = token_share_figure(lens, choice=CHOICE)
    assert [t.name for t in fig.data[:4]] == ["English", "target language", "input language", "other"]
    assert {t.stackgroup for t in fig.data} == {"shares"}
    # each panel's English share is the table's share_en of that pair, layer by layer
    fr_zh = lens[(lens["input_lang"] == "fr") & (lens["target_lang"] == "zh")].sort_values("layer")
    assert list(fig.data[0].x) == list(range(N_LAYERS))
    assert list(fig.data[0].y) == pytest.approx(fr_zh["share_en"].tolist())
    assert [a.text for a in fig.layout.annotations][:3] == [
        "translation: fr → zh (n=30)", "translation: de → ja (n=30)", "translation: en → zh (n=30)"]
    for k in ("yaxis", "yaxis2", "yaxis3"):
        assert fig.layout[k].title.text == "share of top-k tokens" and tuple(fig.layout[k].range) == (0, 1)
    assert fig.layout.xaxis.title.text == "layer" and tuple(fig.layout.xaxis.range) == (-0.5, N_LAYERS - 0.5)
    assert len(fig.data) == 4 * 3  # English, target, input, other; three facets
    assert vline_layers(fig) == {2, 8}
    # Share columns missing: the others still stack.
    fig2 = token_share_figure(make_lens(tasks=("translation",)).drop(columns=["share_other", "share_input"]))
    assert len(fig2.data) == 2 * 3


def test_probe_figure_panels():
    fig = probe_figure(make_probes(), choice=CHOICE)
    subtitle = " ".join(texts(fig))
    assert "Language identity" in subtitle and "Selectivity" in subtitle and "retrieval" in subtitle
    names = [t.name for t in lines(fig)]
    assert {"lang_id_all", "lang_id_latin", "lang_id_all control", "majority baseline",
            "lang_id_all selectivity", "retrieval zh-en", "retrieval ja-en"} <= set(names)
    controls = [t for t in lines(fig) if t.name.endswith("control")]
    assert controls and all(t.line.dash == "dash" and t.showlegend for t in controls)  # named in the legend
    probe_lines = {t.name: t for t in lines(fig) if t.name in ("lang_id_all", "lang_id_latin")}
    # equal accuracies (both 1.0) must not hide one line: the one drawn first is wider
    assert probe_lines["lang_id_all"].line.width > probe_lines["lang_id_latin"].line.width
    # CI bands: two lang-id probes, their selectivities, two retrieval pairs.
    assert len(bands(fig)) == 6
    assert vline_layers(fig) == {2, 8}
    # Retrieval shows one metric (centred accuracy by default), not all four.
    retr = [t for t in lines(fig) if t.name.startswith("retrieval ") and t.name != "retrieval chance"]
    assert len(retr) == 2 and all(": accuracy<" in t.hovertemplate for t in retr)
    margin = probe_figure(make_probes(), retrieval_metric="cos_margin")
    assert "translation retrieval (cos_margin)" in " ".join(texts(margin))
    assert margin.layout.yaxis3.range is None  # not an accuracy: no [0, 1] axis


def test_probe_figure_many_pairs_stay_readable():
    """Nine retrieval pairs (the probe's default languages): each earlier line still wider than the
    next, so equal lines all show, but the widest is 10 px, not 26."""
    rows = [{"layer": layer, "probe": "retrieval", "metric": "accuracy", "value": 0.9, "ci_low": 0.85,
             "ci_high": 0.95, "baseline": 0.01, "lang_pair": f"{lang}-en"}
            for lang in ("zh", "fr", "de", "ru", "ja", "es", "vi", "ar", "ko") for layer in range(N_LAYERS)]
    fig = probe_figure(pd.DataFrame(rows))
    widths = [t.line.width for t in lines(fig) if t.name.startswith("retrieval ") and t.name != "retrieval chance"]
    assert len(widths) == 9 and widths[0] == pytest.approx(10) and widths[-1] == 2
    assert all(a > b for a, b in zip(widths, widths[1:]))
    assert probe_figure(make_probes()).data[1].line.width == 5  # two probes: 3 px apart, as before


def test_probe_figure_partial_and_empty():
    probes = make_probes()
    only_id = probes[probes["probe"] != "retrieval"].drop(columns=["selectivity", "lang_pair"])
    fig = probe_figure(only_id)
    assert texts(fig) == ["Language identity: probe accuracy vs control task"]
    only_retr = probes[(probes["probe"] == "retrieval") & (probes["layer"] < 6)].drop_duplicates(
        ["layer", "metric"]).assign(lang_pair=np.nan)
    fig = probe_figure(only_retr)
    assert [t.name for t in lines(fig)] == ["retrieval all", "retrieval chance"]
    assert "No probe results" in texts(probe_figure(probes.iloc[:0]))[0]
    assert "No probe results" in texts(probe_figure(None))[0]


def test_compare_latent_figure_styles_per_model():
    before, after = make_lens(tasks=("translation",)), make_lens(tasks=("translation",))
    after["p_en"] = after["p_en"] * 0.5
    fig = compare_latent_figure({"before": before, "after": after},
                                choice={"before": CHOICE, "after": {"lc_layer": 3, "et_layer": 9}})
    dashes = {t.name: t.line.dash for t in lines(fig) if t.showlegend}
    assert dashes["P(English · before)"] == "solid" and dashes["P(English · after)"] == "dash"
    # No two lines of a panel share a colour: each model its own shade of the role's colour.
    per_axis = {}
    for t in lines(fig):
        per_axis.setdefault(t.yaxis, []).append(t.line.color)
    assert all(len(set(c)) == len(c) for c in per_axis.values())
    assert vline_layers(fig) == {2, 3, 8, 9}
    assert {(s.x0, s.line.dash) for s in fig.layout.shapes} == {(2, "solid"), (8, "solid"), (3, "dash"), (9, "dash")}
    assert "LC (after) 3" in texts(fig)
    one_choice = compare_latent_figure({"a": before, "b": after}, choice=CHOICE)
    assert vline_layers(one_choice) == {2, 8}
    with pytest.raises(ValueError):
        compare_latent_figure({})


def test_missing_required_columns_is_a_clear_error():
    with pytest.raises(ValueError, match="layer"):
        latent_language_figure(make_lens().drop(columns=["layer"]))
    with pytest.raises(ValueError, match="value"):
        probe_figure(make_probes().drop(columns=["value"]))


# ------------------------------------------------------------------ report


def test_report_single_self_contained_file(tmp_path):
    lens, probes = make_lens(), make_probes()
    summary = pd.DataFrame({"task": ["translation"], "pair": ["fr:zh"], "peak_p_en": [0.6]})
    out = write_report(tmp_path / "run" / "report.html", lens, probes, CHOICE, title="Probe <tiny>",
                       summary_df=summary)
    assert out == tmp_path / "run" / "report.html"
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no temp file left behind
    text = out.read_text(encoding="utf-8")
    assert text.count("plotly.js v") == 1  # the library inline, once
    assert "<script src=" not in text  # nothing fetched from a CDN
    assert "<h1>Probe &lt;tiny&gt;</h1>" in text
    for fig in (latent_language_figure(lens, choice=CHOICE), entropy_figure(lens, choice=CHOICE),
                token_share_figure(lens, choice=CHOICE), probe_figure(probes, choice=CHOICE)):
        assert json.dumps(fig.layout.title.text)[1:-1] in text
    assert text.count("Plotly.newPlot") == 7  # evidence, support, latent, latent (log), entropy, shares, probes
    # The layer choice and its evidence as a table.
    assert "blocks.8.hook_resid_post" in text
    assert "<th>LC decided by</th><td>alignment</td>" in text
    assert "<th>ET decided by</th><td>english_onset</td>" in text
    assert "<th>ET bootstrap support</th><td>layer 8 in 100% of 200 resamples; interval 8-8</td>" in text
    assert "<th>prompt_counts[0]</th><td>task=translation, input_lang=fr" in text
    assert "<th>curves.entropy_bits</th><td>10, 10, 10, 7," in text
    # every kind side by side, and the disagreement said plainly
    assert "Layer evidence side by side" in text and "The kinds of evidence disagree" in text
    assert "entropy drops (Huo et al.) points to LC 3 (interval 3-3), not 2." in text
    assert "Provisional choice" not in text  # 20 items, clear curves, full support
    weak = replace(RULE_CHOICE, evidence=RULE_CHOICE.evidence.but(provisional=("Too few items to decide.",)))
    warned = write_report(tmp_path / "weak.html", lens, probes, weak).read_text(encoding="utf-8")
    assert "Provisional choice" in warned and "<li>Too few items to decide.</li>" in warned
    assert "peak_p_en" in text


def test_report_without_optional_parts(tmp_path):
    lens = make_lens(tasks=("translation",)).drop(columns=["share_en", "share_target", "share_input", "share_other"])
    out = write_report(tmp_path / "report.html", lens, None, None)
    text = out.read_text(encoding="utf-8")
    assert text.count("plotly.js v") == 1
    assert text.count("Plotly.newPlot") == 3  # latent language, its log view and entropy
    assert "Token language shares" not in text and "Linear probes" not in text
    assert "No layer choice" in text
    # Nothing at all still gives a valid page.
    empty = write_report(tmp_path / "empty.html", None, None, None).read_text(encoding="utf-8")
    assert "No lens or probe results" in empty and "plotly.js v" not in empty


def test_per_item_rows_are_refused_clearly():
    items = pd.concat([make_lens(tasks=("translation",)).assign(item_id=i) for i in range(2)])
    with pytest.raises(ValueError, match="per-item"):
        latent_language_figure(items)


def test_evidence_rows_order():
    evidence = Evidence(lc_decided_by="entropy_first_drop", et_decided_by="english_onset",
                        measures={"p_en_peak": 0.25}, curves={"p_en": [0.1, 0.25]})
    assert evidence_rows(evidence) == evidence_rows(evidence.to_dict()) == [
        ("lc_decided_by", "entropy_first_drop"), ("et_decided_by", "english_onset"), ("rule", "current"),
        ("measures.p_en_peak", "0.25"), ("curves.p_en", "0.1, 0.25"), ("provisional", "")]
    # the rule's own evidence: what decided first, then single numbers, then curves and records
    rows = evidence_rows(RULE_CHOICE.evidence)
    assert rows[:2] == [("lc_decided_by", "alignment"), ("et_decided_by", "english_onset")]
    keys = [k for k, _ in rows]
    assert keys.index("measures.p_en_at_et") < keys.index("curves.p_en") < keys.index("prompt_counts[0]")
    assert dict(rows)["curves.entropy_bits"].startswith("10, 10, 10, 7,")
    assert evidence_rows(None) == [] and evidence_rows({}) == []


def test_report_with_extra_figures_only(tmp_path):
    """`dftlens compare` passes its own figures and no lens/probe tables."""
    lens = make_lens(tasks=("translation",))
    extra = [("Latent language, all models", compare_latent_figure({"a": lens, "b": lens}, choice=CHOICE)),
             ("Linear probes: a", probe_figure(make_probes(), choice=CHOICE))]
    text = write_report(tmp_path / "compare.html", None, None, CHOICE, title="compare", figures=extra).read_text(
        encoding="utf-8")
    assert text.count("plotly.js v") == 1 and text.count("Plotly.newPlot") == 4  # + the choice's evidence, support
    assert "<h2>Layer evidence</h2>" in text and "<h2>Latent language, all models</h2>" in text and "<h2>Linear probes: a</h2>" in text


def test_facets_put_translation_first():
    lens = make_lens().sort_values(["task", "input_lang"])  # alphabetical: repetition rows first
    facets = [t for t in texts(latent_language_figure(lens)) if "→" in t]
    assert facets[0].startswith("<b>translation") and facets[-1].startswith("<b>repetition")


def test_every_model_shade_keeps_its_language_hue():
    from dftlens.viz.figure_style import SHADES

    channel = {"en": 2, "target": 0, "input": 1}  # blue, red, green
    for role, k in channel.items():
        for shade in SHADES[role]:
            rgb = [int(shade[i:i + 2], 16) for i in (1, 3, 5)]
            # the role's channel leads and is bright enough to read as a colour, not near-black
            assert rgb[k] == max(rgb) and rgb[k] >= 105, (role, shade)
