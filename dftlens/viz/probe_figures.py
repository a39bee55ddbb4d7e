"""The linear-probe figure: language-ID accuracy with control and selectivity, cross-lingual retrieval."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figure_style import COLORS, line_color
from .figure_axes import empty_figure, layer_ticks, layer_x_range, legend_name, model_title, panel_legends
from .figure_data import choice_dict, has_numbers
from .figure_traces import add_line, mark_layers

# --------------------------------------------------------------------------- linear probes


def _is_retrieval(name: str) -> bool:
    return str(name).lower().startswith("retriev")


def _probe_rows(probes_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``probes.csv`` split for the figure: (all rows, language-identity rows, retrieval rows),
    with a ``metric`` column (``"accuracy"`` when the table has none, ``"value"`` where empty).

    Raises:
        ValueError: the table lacks ``layer``, ``probe`` or ``value``.
    """
    missing = [col for col in ("layer", "probe", "value") if col not in probes_df.columns]
    if missing:
        raise ValueError(f"probe table lacks column(s) {', '.join(missing)}; is it the probe's probes.csv?")
    df = probes_df.copy()
    if "metric" not in df.columns:
        df["metric"] = "accuracy"
    df["metric"] = df["metric"].astype(object).where(df["metric"].notna(), "value").astype(str)
    retr = df[df["probe"].astype(str).map(_is_retrieval)]
    ident = df[~df["probe"].astype(str).map(_is_retrieval)]
    return df, ident, retr


MAX_EXTRA_WIDTH = 8.0  # px: the first of many equal lines is at most this much wider than the last


def _widen(trace: go.Scatter, i: int, n: int) -> None:
    """Line ``i`` of ``n`` drawn wider than every later one (3 px a step, 4 px of marker), so a line
    exactly under a later one still shows around it; with many lines the steps shrink so the first
    is at most :data:`MAX_EXTRA_WIDTH` wider than the last (9 retrieval pairs: 10 px down to 2 px)."""
    step = min(1.0, MAX_EXTRA_WIDTH / (3 * (n - 1))) if n > 1 else 1.0
    wider = (n - 1 - i) * step
    trace.line.width, trace.marker.size = 2 + 3 * wider, 4 + 4 * wider


def _series_names(frame: pd.DataFrame) -> list[tuple[tuple, str]]:
    """((probe, metric), legend name) per line: the metric is named only when a probe has several."""
    groups = list(frame.groupby(["probe", "metric"], sort=False, dropna=False).groups)
    multi_metric = frame.groupby("probe")["metric"].nunique().max() > 1 if len(frame) else False
    return [((p, m), f"{p} ({m})" if multi_metric else str(p)) for p, m in groups]


def _identity_rows(fig: go.Figure, ident: pd.DataFrame, row_of: dict[str, int]) -> None:
    """Language identity (accuracy with CI, control dashed, majority baseline dotted) and, when
    ``row_of`` has ``"sel"``, each probe's selectivity in the row below."""
    baseline_done = False
    for i, ((probe, metric), name) in enumerate(_series_names(ident)):
        frame = ident[(ident["probe"] == probe) & (ident["metric"] == metric)].sort_values("layer")
        color = line_color(i, len(_series_names(ident)))
        if add_line(fig, frame, "value", "ci_low", "ci_high", name=name, color=color, group=name,
                    showlegend=True, row=row_of["ident"], col_idx=1, label=f"{name}: {metric}"):
            # Probes often agree (lang_id_all and lang_id_latin both 1.0): each earlier line is
            # drawn wider, so a line exactly under a later one still shows around it.
            _widen(fig.data[-1], i, len(_series_names(ident)))
        if has_numbers(frame, "control"):  # in the legend, so the dashed lines are named
            add_line(fig, frame, "control", None, None, name=f"{name} control", color=color, group=name,
                      showlegend=True, dash="dash", row=row_of["ident"], col_idx=1,
                      label=f"{name}: control task", band=False)
        if has_numbers(frame, "baseline") and not baseline_done:
            add_line(fig, frame, "baseline", None, None, name="majority baseline", color=COLORS["other"],
                      group="baseline", showlegend=True, dash="dot", row=row_of["ident"], col_idx=1,
                      label="majority baseline", band=False)
            baseline_done = True
        if "sel" in row_of and has_numbers(frame, "selectivity"):
            add_line(fig, frame, "selectivity", "selectivity_ci_low", "selectivity_ci_high",
                      name=f"{name} selectivity", color=color, group=name, showlegend=False,
                      row=row_of["sel"], col_idx=1, label=f"{name}: selectivity")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=row_of["ident"], col=1)
    if "sel" in row_of:
        fig.update_yaxes(title_text="selectivity", row=row_of["sel"], col=1)


def _retrieval_row(fig: go.Figure, retr: pd.DataFrame, row: int, retrieval_metric: str) -> str:
    """One line per language pair (per probe, when there are several) for one metric
    (``retrieval_metric``, else the table's first), chance dotted; returns the metric drawn."""
    metrics = list(dict.fromkeys(retr["metric"]))
    metric = retrieval_metric if retrieval_metric in metrics else metrics[0]
    retr = retr[retr["metric"] == metric].copy()
    pair = retr["lang_pair"] if "lang_pair" in retr.columns else pd.Series(np.nan, index=retr.index)
    retr["_pair"] = pair.astype(object).where(pair.notna(), "all").astype(str)
    several = retr["probe"].nunique() > 1
    groups = list(retr.groupby(["probe", "_pair"], sort=False))
    for i, ((probe, pair_name), frame) in enumerate(groups):
        name = f"{probe} {pair_name}" if several else f"retrieval {pair_name}"
        frame = frame.sort_values("layer")
        if add_line(fig, frame, "value", "ci_low", "ci_high", name=name, color=line_color(i, len(groups)),
                    group=f"retr|{name}", showlegend=True, row=row, col_idx=1,
                    label=f"{name}: {metric}"):  # earlier pairs wider, as above: equal lines both show
            _widen(fig.data[-1], i, len(groups))
        if i == 0 and has_numbers(frame, "baseline"):
            add_line(fig, frame, "baseline", None, None, name="retrieval chance", color=COLORS["other"],
                      group="retr|chance", showlegend=True, dash="dot", row=row, col_idx=1,
                      label="retrieval chance", band=False)
    accuracy_like = "acc" in metric
    fig.update_yaxes(title_text=f"retrieval {metric}", row=row, col=1,
                     **(dict(range=[0, 1.02]) if accuracy_like else {}))
    return metric


def _legends_per_row(fig: go.Figure, row_of: dict[str, int]) -> dict:
    """Each panel lists its own lines in a legend right of it (no long scrolling list): assigns
    every trace its row's legend and returns the legends' layout props."""
    legend_rows = sorted({int((t.yaxis or "y")[1:] or 1) for t in fig.data if t.showlegend is not False})
    for t in fig.data:
        row = int((t.yaxis or "y")[1:] or 1)
        if row in legend_rows:
            t.legend = legend_name(legend_rows.index(row))
    headings = {row_of.get("ident"): "language identity", row_of.get("retr"): "retrieval"}
    return panel_legends(fig, [((r, 1), headings.get(r, "")) for r in legend_rows], below=False)


def probe_figure(probes_df: pd.DataFrame, choice: Any = None, *, retrieval_metric: str = "accuracy",
                 title: str | None = None) -> go.Figure:
    """The probe evidence per layer, in up to three rows sharing the layer axis:

    1. language identity: each probe's accuracy with its 95% CI (solid), the control task's
       accuracy (dashed, same colour) and the majority baseline (dotted grey);
    2. selectivity (accuracy minus control) per probe, with its CI where the table has
       ``selectivity_ci_low`` / ``selectivity_ci_high``;
    3. cross-lingual retrieval of each sentence's translation, one line per language pair,
       for one metric (``retrieval_metric``, default ``"accuracy"``; the first metric in the
       table when that one is absent), with chance level dotted.
    Rows without data are left out.

    Raises:
        ValueError: ``probes_df`` lacks ``layer``, ``probe`` or ``value``.
    """
    c = choice_dict(choice)
    title = title or f"Linear probes per layer{model_title(c)}"
    if probes_df is None or len(probes_df) == 0:
        return empty_figure(title, "No probe results.")
    df, ident, retr = _probe_rows(probes_df)
    panels = []
    if len(ident):
        panels.append(("ident", "Language identity: probe accuracy vs control task"))
        if has_numbers(ident, "selectivity"):
            panels.append(("sel", "Selectivity (probe accuracy − control accuracy)"))
    if len(retr):
        panels.append(("retr", "Cross-lingual alignment: translation retrieval accuracy"))
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=[t for _, t in panels],
                        vertical_spacing=0.1 if len(panels) > 1 else 0.0, shared_xaxes=False)
    row_of = {name: i + 1 for i, (name, _) in enumerate(panels)}
    if "ident" in row_of:
        _identity_rows(fig, ident, row_of)
    if "retr" in row_of:
        metric = _retrieval_row(fig, retr, row_of["retr"], retrieval_metric)
        fig.layout.annotations[len(panels) - 1].text = f"Cross-lingual alignment: translation retrieval ({metric})"
    x_range = layer_x_range([df], c)
    fig.update_xaxes(title_text="layer", range=x_range, **layer_ticks(x_range))
    if c:
        mark_layers(fig, c, rows_cols=[(r, 1) for r in row_of.values()])
    legends = _legends_per_row(fig, row_of)
    fig.update_layout(title=dict(text=title), template="plotly_white", height=max(380, 320 * len(panels)),
                      hovermode="closest", margin=dict(t=90, r=190), **legends)
    return fig


def compare_probe_figure(probes_by_model: dict[str, pd.DataFrame], choice: Any = None,
                         title: str | None = None) -> go.Figure:
    """Two or more models' probes overlaid, per layer: language-ID accuracy of each probe (top)
    and translation-retrieval accuracy averaged over language pairs (bottom).

    Colour says the probe (or retrieval), line style the model (first solid, then dashed,
    dotted, ...), as in :func:`compare_latent_figure`. ``probes_by_model``: label -> probes.csv
    table; models without rows are left out. No CI bands: the per-model figures carry them.
    """
    from .figure_style import DASHES

    frames = {label: df for label, df in probes_by_model.items() if df is not None and len(df)}
    title = title or f"Linear probes per layer: {' vs '.join(frames) or 'no model'}"
    if not frames:
        return empty_figure(title, "No probe results.")
    fig = make_subplots(rows=2, cols=1, vertical_spacing=0.14, subplot_titles=[
        "Language identity: probe accuracy", "Cross-lingual alignment: retrieval accuracy (mean over pairs)"])
    for m, (label, df) in enumerate(frames.items()):
        dash = DASHES[m % len(DASHES)]
        acc = df[df["metric"].fillna("accuracy") == "accuracy"] if "metric" in df.columns else df
        ident = acc[~acc["probe"].astype(str).map(_is_retrieval)]
        for i, (probe, frame) in enumerate(ident.groupby("probe", sort=False)):
            frame = frame.groupby("layer", as_index=False)["value"].mean()
            if add_line(fig, frame, "value", None, None, name=f"{probe} · {label}", color=line_color(i, 2),
                        group=f"{probe}|{label}", showlegend=True, dash=dash, row=1, col_idx=1, band=False):
                fig.data[-1].line.width = 2 + 3 * (ident["probe"].nunique() - 1 - i)  # equal lines both show
        retr = acc[acc["probe"].astype(str).map(_is_retrieval)].groupby("layer", as_index=False)["value"].mean()
        add_line(fig, retr, "value", None, None, name=f"retrieval · {label}", color=COLORS["input"],
                 group=f"retr|{label}", showlegend=True, dash=dash, row=2, col_idx=1, band=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    c = choice_dict(choice)
    x_range = layer_x_range(list(frames.values()), c)
    fig.update_xaxes(title_text="layer", range=x_range, **layer_ticks(x_range))
    if c:
        mark_layers(fig, c, rows_cols=[(1, 1), (2, 1)])
    fig.update_layout(title=dict(text=title), template="plotly_white", height=700, margin=dict(t=90, r=230))
    return fig
