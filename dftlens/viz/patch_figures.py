"""Figures and ``report.html`` of ``dftlens patch`` in the style of Dumas et al. (2025), Fig. 2-3.

One panel per experiment: probability (0..1) against the patched layer, one line
per quantity with its 95% confidence band over pairs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from .. import __version__
from ..io import write_text
from .figure_style import rgba

CONCEPT_LINES = (
    ("p_src_concept", "P(A in Y') source concept, target language", "#d62728", "solid"),
    ("p_src_concept_src_lang", "P(A in Y) source concept, source language", "#ff7f0e", "dash"),
    ("p_tgt_concept", "P(B in Y') target concept, target language", "#1f77b4", "solid"),
    ("p_tgt_concept_src_lang", "P(B in Y) target concept, source language", "#17becf", "dash"),
)
MEAN_LINES = (
    ("acc_patched", "accuracy, mean latent of A patched", "#d62728", "solid"),
    ("acc_unpatched", "accuracy, unpatched prompt of A", "#7f7f7f", "dot"),
    ("p_src_concept", "P(A in Y'), mean latent patched", "#9467bd", "solid"),
    ("p_tgt_concept", "P(B in Y'), mean latent patched", "#1f77b4", "solid"),
)


def patching_figure(table: pd.DataFrame, experiment: str = "concept", source: str | None = None,
                    target: str | None = None, model: str | None = None) -> go.Figure:
    """Probabilities against layer for one experiment of ``patching.csv`` (first one if not named).

    ``model`` (the run's model name) leads the title, so an exported file names what it shows.
    """
    frame = table[table["experiment"] == experiment]
    if source is not None:
        frame = frame[frame["source"] == source]
    if target is not None:
        frame = frame[frame["target"] == target]
    fig = go.Figure()
    if frame.empty:
        fig.update_layout(title=f"no {experiment} results")
        return fig
    key = frame.iloc[0][["source", "target"]]
    frame = frame[(frame["source"] == key["source"]) & (frame["target"] == key["target"])].sort_values("layer")
    x = frame["layer"].tolist()
    for col, label, color, dash in (CONCEPT_LINES if experiment == "concept" else MEAN_LINES):
        if col not in frame or frame[col].isna().all():
            continue
        lo, hi = frame[f"{col}_lo"].tolist(), frame[f"{col}_hi"].tolist()
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=rgba(color, 0.15),
                                 line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=col))
        fig.add_trace(go.Scatter(x=x, y=frame[col].tolist(), mode="lines+markers", name=label, legendgroup=col,
                                 line=dict(color=color, dash=dash, width=2), marker=dict(size=5)))
    n = int(frame["n_pairs"].iloc[0])
    what = "concept patching" if experiment == "concept" else "mean-latent patching"
    fig.update_layout(
        title=f"{model + ': ' if model else ''}{what}: {key['source']} into {key['target']} (n = {n} pairs, 95% CI)",
        xaxis_title="patched layer (block index, resid_post)", yaxis_title="probability",
        yaxis=dict(range=[0, 1]), xaxis=dict(dtick=1 if len(x) <= 40 else None),
        template="plotly_white", height=480, legend=dict(orientation="h", y=-0.22),
        margin=dict(t=60, b=140),
    )
    return fig


_NOTES = {
    "concept": (
        "The source prompt translates concept A from X to Y; the target prompt translates B from X' to Y'. "
        "At each layer l, the source's last-token resid_post overwrites the target's last-token resid_post "
        "at layer l only. Read at the target's output, summed over each word's answer-token set."
    ),
    "mean_latent": (
        "A's last-token latent after its word, averaged over the source prompts' input languages, "
        "overwrites the target prompt's last token of B's word at resid_post of every layer from l to the "
        "last. Accuracy: the top-1 next token is in A's Y' token set."
    ),
}


def patch_figures(table: pd.DataFrame, model: str) -> dict[str, go.Figure]:
    """One figure per (experiment, source, target) of ``patching.csv``, keyed by a file stem that
    names the model and the experiment: ``patch-<model>-<experiment>-<src>-into-<tgt>``, e.g.
    ``patch-gemma3-270m-concept-de-ru-into-fr-zh`` (anything but letters, digits and ``.`` becomes ``-``)."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")

    return {f"patch-{slug(Path(str(model)).name)}-{slug(exp)}-{slug(src)}-into-{slug(tgt)}":
            patching_figure(table, exp, src, tgt, model=model)
            for (exp, src, tgt), _ in table.groupby(["experiment", "source", "target"], sort=False)}


def write_patch_report(path: str | Path, table: pd.DataFrame, causal: dict, title: str,
                       model: str | None = None) -> None:
    """A self-contained page (plotly.js inline once) with one figure per experiment and the causal layers."""
    parts, first = [], True
    for (exp, src, tgt), _ in table.groupby(["experiment", "source", "target"], sort=False):
        fig = patching_figure(table, exp, src, tgt, model=model)
        parts.append(f"<h2>{html.escape(exp.replace('_', '-'))}: {html.escape(src)} into {html.escape(tgt)}</h2>"
                     f"<p class='note'>{html.escape(_NOTES.get(exp, ''))}</p>")
        parts.append(fig.to_html(include_plotlyjs=first, full_html=False))
        first = False
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in causal.items() if k != "experiments")
    for exp in causal.get("experiments", []):
        rows += "".join(f"<tr><th>{html.escape(exp['source'])} into {html.escape(exp['target'])}: "
                        f"{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in exp.items() if k not in ("source", "target"))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:1200px;"
        "margin:2rem auto;padding:0 1rem}} th,td{{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}}"
        "table{{border-collapse:collapse}} p.note{{color:#444;max-width:60rem}}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>dftlens {__version__}; Dumas et al. (ACL 2025) activation patching.</p>"
        + "".join(parts) + f"<h2>Causal layers</h2><table>{rows}</table></body></html>"
    )
    write_text(path, page)
