"""Every figure dftlens builds (probe report, compare, before/after, eval): each y axis with a
fixed range contains the data drawn on it, and axes tied by ``matches`` show one quantity."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.subplots import make_subplots

from dftlens.analysis.probe_run import summarise_subsets
from dftlens.viz.checks import axis_problems
from dftlens.viz.eval_figures import delta_figure, scores_figure
from dftlens.viz.figures import compare_latent_figure, item_heatmap_figure, latent_language_figure
from dftlens.viz.report import report_figures
from test_viz import CHOICE, N_LAYERS, make_lens, make_probes

PAIRS = (("fr", "zh"), ("de", "ja"), ("zh", "fr"))


def make_items(n_items: int = 12, seed: int = 0) -> pd.DataFrame:
    """Per-item rows like lens_items.csv: entropy up to ~13 bits, probabilities in [0, 1],
    a third of the items answered correctly."""
    rng = np.random.default_rng(seed)
    rows = []
    for src, tgt in PAIRS:
        for i in range(n_items):
            correct = i % 3 == 0
            for layer in range(N_LAYERS):
                t = layer / (N_LAYERS - 1)
                p_en = float(np.clip(rng.beta(1, 8) + 0.5 * math.exp(-(((t - 0.6) / 0.15) ** 2)), 0, 0.95))
                p_tgt = float(np.clip((0.9 if correct else 0.1) * t ** 6 + rng.beta(1, 50), 0, 1 - p_en))
                rows.append({"task": "translation", "input_lang": src, "target_lang": tgt, "item_id": f"w{i}",
                             "layer": layer, "p_en": p_en, "p_target": p_tgt, "p_input": 0.02 * (1 - t),
                             "share_en": p_en, "share_target": p_tgt, "share_input": 0.0,
                             "share_other": 1 - p_en - p_tgt, "entropy_bits": 13 * (1 - t) + rng.random(),
                             "correct": correct})
    return pd.DataFrame(rows)


def probe_figures() -> list[tuple[str, go.Figure]]:
    items = make_items()
    lens = summarise_subsets(items)
    assert set(lens["subset"]) == {"all", "correct"}
    figs = [(f"report:{key}", fig) for key, _, fig in report_figures(lens, make_probes(), CHOICE, items)]
    figs += [(f"report-synthetic:{key}", fig) for key, _, fig in report_figures(make_lens(), make_probes(), CHOICE)]
    figs += [(f"latent:{mode}", latent_language_figure(lens, prob_axis=mode)) for mode in ("full", "auto", "log")]
    figs.append(("items", item_heatmap_figure(items, choice=CHOICE)))
    return figs


def compare_figures() -> list[tuple[str, go.Figure]]:
    base = summarise_subsets(make_items(seed=0))
    tuned = summarise_subsets(make_items(seed=1))
    return [(f"compare:{subset}", compare_latent_figure({"base": base, "DFT": tuned}, choice=CHOICE, subset=subset))
            for subset in ("all", "correct")]


def eval_figures() -> list[tuple[str, go.Figure]]:
    rows = []
    for model, shift in (("base", 0.0), ("DFT", 0.05)):
        for lang in ("zh", "en"):
            rows.append({"model": model, "task": "mcqa", "language": lang, "metric": "acc", "value": 0.97 + shift / 2,
                         "stderr": 0.04})  # the error bar reaches past 100 %
            rows.append({"model": model, "task": "qa", "language": lang, "metric": "f1", "value": 0.02 + shift,
                         "stderr": 0.03})  # ... and below 0
            rows.append({"model": model, "task": "heldout", "language": lang, "metric": "nll",
                         "value": 2.6 - shift, "stderr": 0.1})  # nats, not a proportion
    frame = pd.DataFrame(rows)
    return [(f"eval:{kind}:{m}", fn(frame, m)) for m in ("acc", "f1", "nll")
            for kind, fn in (("scores", scores_figure), ("delta", delta_figure))]


@pytest.mark.parametrize("builder", [probe_figures, compare_figures, eval_figures])
def test_every_figure_shows_its_data(builder):
    figs = builder()
    assert figs
    problems = [p for name, fig in figs for p in axis_problems(fig, name)]
    assert problems == []


def test_latent_axes_are_explicit_and_never_mix_quantities():
    """The bug this guards against: matched axes left without a computed range, so probability
    panels and entropy rows got one shared [0, 4] range when rendered."""
    items = make_items()
    for fig in (latent_language_figure(summarise_subsets(items), choice=CHOICE),
                compare_latent_figure({"a": summarise_subsets(items), "b": summarise_subsets(make_items(seed=3))})):
        layout = fig.layout.to_plotly_json()
        used = {("yaxis" + (t.yaxis or "y")[1:]) for t in fig.data}
        for key in used:
            axis = layout[key]
            assert axis.get("range") is not None and not axis.get("matches"), key
            title = axis["title"]["text"]
            names = {t.name.split(" 95% CI")[0] for t in fig.data if "yaxis" + (t.yaxis or "y")[1:] == key}
            if title == "probability":
                assert tuple(axis["range"]) == (0.0, 1.0) and all(n.startswith("P(") for n in names)
            else:
                assert "entropy" in title and all(n.startswith("entropy") for n in names)
                top = max(max(v for v in t.y if v is not None) for t in fig.data
                          if "yaxis" + (t.yaxis or "y")[1:] == key)
                assert 12 < top <= axis["range"][1]


def test_checker_catches_hidden_data_and_mixed_matches():
    fig = make_subplots(rows=1, cols=2)
    fig.add_scatter(x=[0, 1], y=[0.1, 0.9], name="P(English)", row=1, col=1)
    fig.add_scatter(x=[0, 1], y=[12.0, 3.0], name="entropy (bits)", row=1, col=2)
    fig.update_yaxes(range=[0, 4], row=1, col=1)
    fig.update_yaxes(range=[0, 4], matches="y", row=1, col=2)
    fig.update_yaxes(title_text="probability", row=1, col=1)
    fig.update_yaxes(title_text="entropy (bits)", row=1, col=2)
    problems = axis_problems(fig)
    assert any("hides 'entropy (bits)' values in [3, 12]" in p for p in problems)
    assert any("matched to yaxis" in p and "different quantities" in p for p in problems)
    # Log axes compare in log10 units; zeros are ignored there.
    log = go.Figure(go.Scatter(y=[0.0, 1e-5, 0.5], name="P(target)"))
    log.update_yaxes(type="log", range=[-3, 0])
    assert len(axis_problems(log)) == 1
    log.update_yaxes(range=[-6, 0])
    assert axis_problems(log) == []


@pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="exporting figures needs Chromium or Chrome")
def test_save_figure_pdf_from_python(tmp_path):
    from dftlens.viz.export import ExportError, save_figure

    fig = latent_language_figure(summarise_subsets(make_items()), choice=CHOICE)
    assert save_figure(fig, tmp_path / "latent.pdf") == [tmp_path / "latent.pdf"]
    assert (tmp_path / "latent.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latent.pdf"]
    with pytest.raises(ExportError, match="gif"):
        save_figure(fig, tmp_path / "latent", "png,gif")


def test_entropy_interval_is_bounded_and_absent_for_tiny_subsets():
    from dftlens.analysis.stats import MIN_BOOTSTRAP_ITEMS

    items = make_items(seed=0)
    items["entropy_bits"] = np.where(np.arange(len(items)) % 2, 0.0, 12.0)  # a t interval would go below 0
    lens = summarise_subsets(items)
    shown = lens[lens["n_items"] >= MIN_BOOTSTRAP_ITEMS]
    assert len(shown) and (shown["entropy_bits_lo"] >= 0).all() and (shown["entropy_bits_hi"] <= 12).all()
    assert (shown["entropy_bits_lo"] <= shown["entropy_bits"]).all()
    tiny = summarise_subsets(items.groupby(["task", "input_lang", "target_lang", "layer"]).head(2))
    assert tiny["entropy_bits_lo"].isna().all() and tiny["entropy_bits_hi"].isna().all()  # no interval, not a wrong one


def test_item_heatmap_layer_labels_sit_above_the_data_and_rows_are_readable():
    fig = item_heatmap_figure(make_items(seed=0), choice=CHOICE)
    marks = [a for a in fig.layout.annotations if a.text.startswith(("LC", "ET"))]
    assert marks and all(a.y == 1 and a.yanchor == "bottom" for a in marks)  # above the top row, not on it
    sizes = [fig.layout[k].tickfont.size for k in fig.layout if k.startswith("yaxis")]
    assert sizes and all(size >= 11 for size in sizes)  # item names readable (were 9 px)
