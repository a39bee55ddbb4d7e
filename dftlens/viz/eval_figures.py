"""Plotly figures and the HTML report for ``dftlens eval``.

The figures are pure functions of the tidy results frame (columns model, task,
language, metric, value, stderr; values in [0, 1]) and show exactly its numbers,
as percentages. Error bars are one standard error as lm-eval reports it (over the
documents of a task). For a difference between two models the bar is
sqrt(se1^2 + se2^2), which treats the two runs as independent; they score the same
documents, so the paired standard error is usually smaller.
"""

from __future__ import annotations

import html
import math
import re
from typing import Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go

from .figure_style import PALETTE

__all__ = ["scores_figure", "delta_figure", "report_figures", "report_html"]


def _pct(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else 100.0 * x


def _models(frame: pd.DataFrame, models: Sequence[str] | None) -> list[str]:
    return list(models) if models else list(dict.fromkeys(frame["model"]))


def _cell(row) -> str:
    return f"{row['task']} · {row['language']}" if row["language"] else str(row["task"])


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250)
    return fig


def _is_share(values: pd.Series) -> bool:
    """True when a metric's values are proportions (all in [0, 1]): shown as percentages."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v)) and bool(((v >= 0) & (v <= 1)).all())


def scores_figure(frame: pd.DataFrame, metric: str, models: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars: one group per (task, language), one bar per model, ±1 s.e.

    Proportions (accuracy, F1: every value in [0, 1]) are drawn as percentages on a 0..100
    axis (widened if an error bar reaches past it); any other metric (e.g. a held-out NLL in
    nats) in its own units on an axis fitted to the bars and their error bars."""
    sub = frame[frame["metric"] == metric]
    share = _is_share(sub["value"]) if not sub.empty else True
    unit = " (%)" if share else ""
    title = f"{metric}{unit} by task and language"
    if sub.empty:
        return _empty(title, f"no {metric} results")
    scale = _pct if share else (lambda x: None if x is None or pd.isna(x) else float(x))
    cells = list(dict.fromkeys(_cell(r) for _, r in sub.iterrows()))
    fig = go.Figure()
    tops, bottoms = [0.0], [0.0]
    for k, model in enumerate(_models(frame, models)):
        rows = {_cell(r): r for _, r in sub[sub["model"] == model].iterrows()}
        y = [scale(rows[c]["value"]) if c in rows else None for c in cells]
        err = [scale(rows[c]["stderr"]) if c in rows else None for c in cells]
        err = [e if e is not None else 0.0 for e in err]
        tops += [v + e for v, e in zip(y, err) if v is not None]
        bottoms += [v - e for v, e in zip(y, err) if v is not None]
        fig.add_bar(
            name=model, x=cells, y=y, marker_color=PALETTE[k % len(PALETTE)],
            error_y=dict(type="data", array=err, visible=True),
            hovertemplate=f"{model}<br>%{{x}}<br>{metric} %{{y:.{1 if share else 3}f}}{'%' if share else ''}"
                          "<extra></extra>",
        )
    top, low = max(tops), min(bottoms)
    span = (top - low) or 1.0
    y_range = [min(0.0, low - 0.03 * span), max(100.0, top + 0.03 * span) if share else top + 0.05 * span]
    fig.update_layout(title=title, barmode="group", yaxis_title=f"{metric}{unit}", yaxis_range=y_range,
                      legend_title="model", height=420)
    return fig


def delta_figure(frame: pd.DataFrame, metric: str, models: Sequence[str] | None = None) -> go.Figure:
    """Each further model minus the first, ±sqrt(se1²+se2²): in percentage points for
    proportions, in the metric's own units otherwise."""
    models = _models(frame, models)
    sub = frame[frame["metric"] == metric]
    unit = " (points)" if sub.empty or _is_share(sub["value"]) else ""
    # The title names every model compared, so an exported delta_<metric> file says what it shows.
    title = (f"{metric}: difference to {models[0]} of {', '.join(models[1:])}{unit}" if len(models) > 1
             else f"{metric}: difference to {models[0] if models else 'the first model'}{unit}")
    if len(models) < 2 or sub.empty:
        return _empty(title, "needs two or more models")
    base = {_cell(r): r for _, r in sub[sub["model"] == models[0]].iterrows()}
    share = _is_share(sub["value"])
    cells = list(base)
    fig = go.Figure()
    for k, model in enumerate(models[1:], start=1):
        rows = {_cell(r): r for _, r in sub[sub["model"] == model].iterrows()}
        y, err = [], []
        for c in cells:
            if c not in rows:
                y.append(None)
                err.append(0)
                continue
            a, b = base[c], rows[c]
            factor = 100.0 if share else 1.0  # proportions in percentage points, others in their units
            y.append(factor * float(b["value"] - a["value"]))
            se = math.sqrt(sum(float(s) ** 2 for s in (a["stderr"], b["stderr"]) if pd.notna(s)))
            err.append(factor * se)
        fig.add_bar(name=model, x=cells, y=y, marker_color=PALETTE[k % len(PALETTE)],
                    error_y=dict(type="data", array=err, visible=True),
                    hovertemplate=f"{model}<br>%{{x}}<br>Δ %{{y:+.{1 if share else 3}f}}"
                                  + (" points" if share else "") + "<extra></extra>")
    fig.add_hline(y=0, line_color="#444", line_width=1)
    fig.update_layout(title=title, barmode="group", yaxis_title="Δ (points)" if share else f"Δ {metric}",
                      legend_title="model", height=380)
    return fig


def _table_html(wide: pd.DataFrame, models: Sequence[str]) -> str:
    head = ["task", "language", "metric", *models, *(f"Δ {m}" for m in models[1:])]
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for _, r in wide.iterrows():
        cells = [html.escape(str(r["task"])), html.escape(str(r["language"])), html.escape(str(r["metric"]))]
        for m in models:
            v, se = _pct(r.get(m)), _pct(r.get(f"{m} stderr"))
            cells.append("–" if v is None else f"{v:.1f}" + (f" ± {se:.1f}" if se is not None else ""))
        for m in models[1:]:
            d = _pct(r.get(f"Δ {m}"))
            cells.append("–" if d is None else f"{d:+.1f}")
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def report_figures(frame: pd.DataFrame, models: Sequence[str] | None = None
                   ) -> list[tuple[str, str, go.Figure]]:
    """The report's figures as (key, heading, figure), in page order, like the probe's
    :func:`dftlens.viz.report.report_figures`: ``scores_<metric>`` for each metric, then (two
    or more models) ``delta_<metric>``; the heading is the figure's title. ``key`` is the file
    name stem when the figures are exported (:func:`dftlens.viz.export.save_figures`,
    ``--figure-format``): the metric with anything but letters, digits, ``.``, ``_`` and ``-``
    replaced by ``_``."""
    models = _models(frame, models) if not frame.empty else list(models or [])
    metrics = list(dict.fromkeys(frame["metric"])) if not frame.empty else []
    stems: dict[str, str] = {}
    for metric in metrics:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(metric)).strip("._") or "metric"
        base, n = stem, 2
        while stem in stems.values():  # two metrics that read the same once cleaned
            stem, n = f"{base}_{n}", n + 1
        stems[metric] = stem
    figures = [(f"scores_{stems[m]}", scores_figure(frame, m, models)) for m in metrics]
    if len(models) > 1:
        figures += [(f"delta_{stems[m]}", delta_figure(frame, m, models)) for m in metrics]
    return [(key, fig.layout.title.text or key, fig) for key, fig in figures]


def report_html(frame: pd.DataFrame, wide: pd.DataFrame, models: Sequence[str], *,
                skipped: Iterable[str] = (), notes: Iterable[str] = (), settings: dict | None = None,
                title: str = "dftlens eval") -> str:
    """A self-contained HTML page (plotly.js inlined, so it opens offline)."""
    models = list(models)
    figures = [fig for _, _, fig in report_figures(frame, models)]
    parts = []
    for k, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(k == 0), default_width="100%"))
    settings_html = ""
    if settings:
        settings_html = "<ul>" + "".join(
            f"<li><b>{html.escape(str(k))}</b>: "
            f"{html.escape(', '.join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))}</li>"
            for k, v in settings.items()) + "</ul>"
    lists = ""
    for heading, items in (("Notes", list(notes)), ("Not run", list(skipped))):
        if items:
            lists += f"<h2>{heading}</h2><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"
    table = _table_html(wide, models) if not wide.empty else "<p>No results.</p>"
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Models: {html.escape(', '.join(models))}. Scores in %, ± one standard error; "
            f"Δ is each model minus the first, in points.</p>{settings_html}{table}{lists}"
            + "".join(parts) + "</body></html>")
