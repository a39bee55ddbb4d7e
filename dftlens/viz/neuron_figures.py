"""Figures and ``report.html`` of ``dftlens neurons`` and ``dftlens steer``.

- :func:`counts_figure`: language-specific neurons per layer, one line per language
  (Tang et al. 2024, Fig. 2: where the neurons sit);
- :func:`deactivation_figure`: perplexity ratios (deactivated / unpatched) per deactivated set
  (rows) and evaluated language (columns), beside the random-neuron control (Tang et al., Fig. 3);
- :func:`steering_figure`: switch rate, P(new language) and P(old language) against the steered
  layer, one line per strength, with 95% CI bands over prompts.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import __version__
from ..io import write_text
from .figure_style import line_color, rgba


def counts_figure(counts: pd.DataFrame, title: str = "language-specific neurons per layer") -> go.Figure:
    """Neuron count against layer, one line per language (``neuron_counts.csv``)."""
    fig = go.Figure()
    langs = list(dict.fromkeys(counts["language"]))
    for i, lang in enumerate(langs):
        part = counts[counts["language"] == lang].sort_values("layer")
        fig.add_trace(go.Scatter(x=part["layer"].tolist(), y=part["count"].tolist(), mode="lines+markers", name=lang,
                                 line=dict(color=line_color(i, len(langs)), width=2)))
    top = max(1, int(counts["count"].max()) if len(counts) else 1)
    fig.update_layout(title=title, xaxis_title="layer (block index, mlp.hook_post)", yaxis_title="neurons",
                      yaxis=dict(range=[0, top * 1.08]),
                      xaxis=dict(dtick=1, range=[-0.5, float(counts["layer"].max()) + 0.5] if len(counts) else None), template="plotly_white", height=420)
    return fig


def deactivation_figure(table: pd.DataFrame) -> go.Figure:
    """Heatmaps of ``ppl_ratio``: language neurons zeroed (left) and the random control (right)."""
    kinds = [k for k in ("language", "random") if (table["control"] == k).any()]
    fig = make_subplots(rows=1, cols=len(kinds), horizontal_spacing=0.12,
                        subplot_titles=[f"{k} neurons zeroed" if k == "language" else "random neurons (control)"
                                        for k in kinds])
    # log2 of the ratio, diverging around 0 (no change): red raises perplexity, blue lowers it
    part = np.log2(table[table["control"].isin(kinds)]["ppl_ratio"].to_numpy(float))
    span = max(float(np.nanmax(np.abs(part))) if len(part) else 0.0, 0.1)
    ticks = [t for t in range(-int(np.ceil(span)), int(np.ceil(span)) + 1)]
    for col, kind in enumerate(kinds, start=1):
        grid = table[table["control"] == kind].pivot(index="deactivated", columns="language", values="ppl_ratio")
        order = [lang for lang in dict.fromkeys(table["language"]) if lang in grid.index]
        grid = grid.reindex(index=order, columns=list(dict.fromkeys(table["language"])))
        fig.add_trace(go.Heatmap(
            z=np.log2(grid.values), x=list(grid.columns), y=list(grid.index), zmin=-span, zmax=span,
            colorscale="RdBu_r", text=[[f"{v:.2f}" for v in row] for row in grid.values], texttemplate="%{text}",
            showscale=col == len(kinds), customdata=grid.values,
            colorbar=dict(title="PPL ratio", tickvals=ticks, ticktext=[f"{2.0 ** t:g}" for t in ticks]),
            hovertemplate="zeroed %{y}, scored %{x}: ratio %{customdata:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="evaluated language", row=1, col=col)
        fig.update_yaxes(title_text="neurons zeroed (language)", autorange="reversed", row=1, col=col)
    fig.update_layout(title="perplexity ratio, deactivated / unpatched (geometric mean over held-out sentences; log colour scale)",
                      template="plotly_white", height=460)
    return fig


def steering_figure(table: pd.DataFrame, title: str = "steering") -> go.Figure:
    """Switch rate and P(new)/P(old) against layer, one colour per strength; dotted: unsteered."""
    panels = [("switched", "top-1 switched (share)"), ("p_new", "P(answer in new language)"),
              ("p_old", "P(answer in old language)")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.07)
    steered, base = table[table["layer"] >= 0], table[table["layer"] < 0]
    strengths = sorted(steered["strength"].unique())
    for col, (metric, label) in enumerate(panels, start=1):
        for i, s in enumerate(strengths):
            part = steered[steered["strength"] == s].sort_values("layer")
            x, color = part["layer"].tolist(), line_color(i, len(strengths))
            lo, hi = part[f"{metric}_lo"].tolist(), part[f"{metric}_hi"].tolist()
            fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=rgba(color, 0.15),
                                     mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False, name=f"CI {s:g}"),
                          row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=part[metric].tolist(), mode="lines+markers", name=f"strength {s:g}",
                                     legendgroup=str(s), showlegend=col == 1, line=dict(color=color, width=2)),
                          row=1, col=col)
        if len(base) and len(steered):
            xs = [int(steered["layer"].min()), int(steered["layer"].max())]
            fig.add_trace(go.Scatter(x=xs, y=[float(base[metric].iloc[0])] * 2, mode="lines", name="unsteered",
                                     legendgroup="base", showlegend=col == 1, line=dict(color="#555", dash="dot")),
                          row=1, col=col)
        fig.update_xaxes(title_text="steered layer", row=1, col=col)
        fig.update_yaxes(range=[0, 1], row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", height=440, legend=dict(orientation="h", y=-0.25),
                      margin=dict(b=120))
    return fig


def _page(title: str, intro: str, parts: list[str], summary: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:1300px;"
            "margin:2rem auto;padding:0 1rem}} th,td{{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}}"
            "table{{border-collapse:collapse}} p.note{{color:#444;max-width:60rem}}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>dftlens {__version__}; {intro}</p>" + "".join(parts)
            + f"<h2>Summary</h2><table>{rows}</table></body></html>")


def write_neurons_report(path: str | Path, result, title: str) -> None:
    """``report.html`` of a :class:`~dftlens.analysis.neurons.NeuronsResult` (plotly.js inline once)."""
    cfg = result.config
    figs = [("Where the language-specific neurons sit", counts_figure(result.counts),
             f"LAPE (Tang et al., ACL 2024): the lowest-entropy {cfg.top_rate:.2%} of MLP hidden units (active: the "
             f"activation function's output > 0) among those with some activation probability above the "
             f"{cfg.filter_rate:.0%} quantile; a unit counts for each language whose probability is above the "
             f"{cfg.activation_bar_ratio:.0%} quantile.")]
    if result.deactivation is not None:
        figs.append(("Deactivation", deactivation_figure(result.deactivation),
                     "Each row zeroes one language's neurons at blocks.{l}.mlp.hook_post; each column scores the "
                     "held-out sentences of one language. Right: as many random neurons from the same layers."))
    parts = []
    for i, (head, fig, note) in enumerate(figs):
        parts.append(f"<h2>{html.escape(head)}</h2><p class='note'>{html.escape(note)}</p>")
        parts.append(fig.to_html(include_plotlyjs=i == 0, full_html=False))
    write_text(path, _page(title, "language neurons (Tang et al. 2024, arXiv 2402.16438).", parts, result.summary))


def write_steering_report(path: str | Path, result, title: str) -> None:
    """``report.html`` of a :class:`~dftlens.analysis.steering.SteerResult`."""
    cfg = result.config
    head = f"{cfg.method} steering of {':'.join(cfg.source)} prompts towards {cfg.target}"
    n = int(result.table["n_items"].iloc[0]) if len(result.table) else 0
    fig = steering_figure(result.table, f"{head} (n = {n} prompts, 95% CI)")
    note = ("switched: the top-1 next token is in the concept's token set in the new language; P(...): probability "
            "mass on the concept's token sets. Dotted: the unsteered prompts.")
    parts = [f"<h2>{html.escape(head)}</h2><p class='note'>{html.escape(note)}</p>",
             fig.to_html(include_plotlyjs=True, full_html=False)]
    write_text(path, _page(title, "language steering (Tang et al. 2024; Schut et al. 2025).", parts, result.summary))


__all__ = ["counts_figure", "deactivation_figure", "steering_figure", "write_neurons_report",
           "write_steering_report"]
