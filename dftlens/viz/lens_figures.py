"""Lens figures besides the latent-language one: entropy, MWork token shares, the per-item heatmap."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figure_axes import (
    empty_figure, facet_title, fit_range, grid_shape, layer_ticks, layer_x_range, legend_name, model_title,
    panel_legends,
)
from .figure_data import (
    as_numbers, choice_dict, entropy_ci_columns, facet_frame, facet_keys, filter_lens, has_numbers, pair_key,
)
from .figure_style import COLORS, line_color, rgba
from .figure_traces import add_line, hover_data, mark_layers

# --------------------------------------------------------------------------- entropy


def entropy_figure(lens_df: pd.DataFrame, choice: Any = None, *, task: str | Sequence[str] | None = None,
                   pairs: Sequence | None = None, title: str | None = None, subset: str = "all") -> go.Figure:
    """Logit-lens entropy (bits) per layer with its 95% CI: one panel per task, one line per
    (input → target) pair in a colour of its own, each panel with its own legend beneath it.
    All panels share one y range fitted to the data. The paper's layer rule reads the first
    and second sharp drop of this curve."""
    c = choice_dict(choice)
    df = filter_lens(lens_df, task, pairs, subset)
    title = title or f"Logit-lens entropy per layer{model_title(c)}"
    if not has_numbers(df, "entropy_bits"):
        return empty_figure(title, "The lens table has no entropy_bits column.")
    keys = facet_keys(df)
    tasks = list(dict.fromkeys(k[0] for k in keys))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks,
                        horizontal_spacing=0.06 if len(tasks) > 1 else 0.0)
    for t, task_name in enumerate(tasks):
        pair_keys = [k for k in keys if k[0] == task_name]
        for i, key in enumerate(pair_keys):
            frame = facet_frame(df, key)
            name = f"{key[1]} → {key[2]}"
            add_line(fig, frame, "entropy_bits", *entropy_ci_columns(frame), name=name,
                      color=line_color(i, len(pair_keys)), group=f"{task_name}|{name}", showlegend=True,
                      label=f"entropy · {facet_title(key)}", fmt=".2f", row=1, col_idx=t + 1)
        for trace in fig.data:
            if trace.legendgroup and trace.legendgroup.startswith(f"{task_name}|"):
                trace.legend = legend_name(t)
    x_range = layer_x_range([df], c)
    fig.update_xaxes(title_text="layer", range=x_range, **layer_ticks(x_range, len(tasks)))
    fig.update_yaxes(range=fit_range([df], ["entropy_bits", *entropy_ci_columns(df)]), type="linear")
    fig.update_yaxes(title_text="entropy (bits)", row=1, col=1)
    if c:
        mark_layers(fig, c, rows_cols=[(1, t + 1) for t in range(len(tasks))])
    n_legend = max(sum(1 for k in keys if k[0] == t) for t in tasks)
    height, margin = 420 + 22 * n_legend, dict(t=90, b=80 + 22 * n_legend)
    plot_px = height - margin["t"] - margin["b"]
    fig.update_layout(title=dict(text=title), template="plotly_white", height=height, margin=margin,
                      **panel_legends(fig, [((1, t + 1), "input → target") for t in range(len(tasks))],
                                       drop=58 / plot_px))
    return fig


# --------------------------------------------------------------------------- token shares (MWork)

_SHARE_COLS = (("share_en", "en", "English"), ("share_target", "target", "target language"),
               ("share_input", "input", "input language"), ("share_other", "other", "other"))


def token_share_figure(lens_df: pd.DataFrame, choice: Any = None, *, task: str | Sequence[str] | None = None,
                       pairs: Sequence | None = None, max_cols: int = 3, title: str | None = None,
                       subset: str = "all") -> go.Figure | None:
    """MWork-style view (Zhao et al. 2024): per layer, the share of the top-k logit-lens tokens
    that are English, target-language or other, as stacked areas; one panel per
    (task, input → target). Returns ``None`` when the lens table has no ``share_*`` columns."""
    present = [(col, role, label) for col, role, label in _SHARE_COLS if has_numbers(lens_df, col)]
    if not present:
        return None
    c = choice_dict(choice)
    df = filter_lens(lens_df, task, pairs, subset)
    title = title or f"Top-k logit-lens tokens by language per layer (MWork view){model_title(c)}"
    keys = facet_keys(df)
    if not keys:
        return empty_figure(title, "No lens rows to plot (check the task / pairs filter).")
    rows, cols = grid_shape(len(keys), max_cols)
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[facet_title(k, facet_frame(df, k)) for k in keys],
                        vertical_spacing=min(0.12, 0.9 / max(1, rows - 1)) if rows > 1 else 0.0,
                        horizontal_spacing=0.06 if cols > 1 else 0.0)
    cells = []
    for i, key in enumerate(keys):
        r, cc = i // cols + 1, i % cols + 1
        cells.append((r, cc))
        frame = facet_frame(df, key)
        custom, extra = hover_data(frame, None, None)
        for col, role, label in present:
            name = f"{label} ({key[2]})" if role == "target" and len(keys) == 1 else label
            fig.add_trace(go.Scatter(
                x=as_numbers(frame["layer"]), y=as_numbers(frame[col]), name=name, legendgroup=role, showlegend=i == 0,
                mode="lines", stackgroup="shares", line=dict(color=COLORS[role], width=0.5),
                fillcolor=rgba(COLORS[role], 0.6), customdata=custom,
                hovertemplate=f"<b>{label}</b><br>layer %{{x}}<br>share %{{y:.2f}}"
                              + (f"<br>{extra}" if extra else "") + "<extra></extra>",
            ), row=r, col=cc)
        fig.update_yaxes(title_text="share of top-k tokens", range=[0, 1.0], row=r, col=cc)
        fig.update_xaxes(title_text="layer", row=r, col=cc)
    fig.update_xaxes(range=layer_x_range([df], c), **layer_ticks(layer_x_range([df], c), cols))
    if c:
        mark_layers(fig, c, rows_cols=cells)
    fig.update_layout(title=dict(text=title), template="plotly_white", height=max(360, 330 * rows),
                      margin=dict(t=90))
    return fig


# --------------------------------------------------------------------------- per item


def item_heatmap_figure(lens_items: pd.DataFrame, task: str = "translation", pairs: Sequence | None = None,
                        choice: Any = None, *, columns: Sequence[str] = ("p_en", "p_target"),
                        sort_by: str = "p_en", title: str | None = None) -> go.Figure:
    """Per-item logit lens: a heatmap of items (rows) x layers (columns) for P(English) and
    P(target) side by side, one row of panels per (input → target) pair of ``task``.

    ``lens_items`` is the per-item table (``lens_items.csv`` / ``result.lens_items``). Items
    are sorted by their largest ``sort_by`` over layers (strongest first), so the items
    where the English pivot is strong are at the top; averaged curves hide them. Colours
    run 0..1 (the same scale in every panel); items answered correctly at the last layer
    (``correct`` column) are marked ✓ in the row label. Hover shows the item, layer and value.
    """
    c = choice_dict(choice)
    title = title or f"Per-item logit lens ({task}){model_title(c)}"
    needed = {"task", "input_lang", "target_lang", "item_id", "layer", *columns}
    missing = sorted(needed - set(lens_items.columns))
    if missing:
        raise ValueError(f"per-item table lacks column(s) {', '.join(missing)}; pass lens_items.csv.")
    df = lens_items[lens_items["task"].astype(str) == task]
    if pairs is not None:
        keys = {pair_key(p) for p in pairs}
        df = df[[(a, b) in keys for a, b in zip(df["input_lang"].astype(str), df["target_lang"].astype(str))]]
    pair_keys = list(dict.fromkeys(zip(df["input_lang"].astype(str), df["target_lang"].astype(str))))
    if not pair_keys:
        return empty_figure(title, f"No per-item rows for task {task!r}.")
    labels = {"p_en": "P(English)", "p_target": "P(target)", "p_input": "P(input)"}
    subtitles = [f"{labels.get(col, col)}: {a} → {b}" for a, b in pair_keys for col in columns]
    n_max = max(df[(df["input_lang"] == a) & (df["target_lang"] == b)]["item_id"].nunique() for a, b in pair_keys)
    fig = make_subplots(rows=len(pair_keys), cols=len(columns), subplot_titles=subtitles,
                        horizontal_spacing=0.12, vertical_spacing=min(0.3, 60 / (n_max * 14 + 80)))
    for r, (a, b) in enumerate(pair_keys, start=1):
        sub = df[(df["input_lang"] == a) & (df["target_lang"] == b)]
        order = sub.groupby("item_id")[sort_by].max().sort_values(ascending=False).index.tolist()
        correct = (sub.groupby("item_id")["correct"].max().astype(bool).to_dict()
                   if "correct" in sub.columns else {})
        names = [f"{item} ✓" if correct.get(item) else str(item) for item in order]
        for k, col in enumerate(columns, start=1):
            grid = sub.pivot_table(index="item_id", columns="layer", values=col, aggfunc="mean").reindex(order)
            fig.add_trace(go.Heatmap(
                z=grid.to_numpy(float), x=[int(x) for x in grid.columns], y=names, zmin=0.0, zmax=1.0,
                colorscale="Viridis", showscale=(r == 1 and k == 1), name=f"per item: {labels.get(col, col)}",
                colorbar=dict(title=dict(text="probability"), len=0.5, y=1, yanchor="top"),
                hovertemplate=f"%{{y}}<br>layer %{{x}}<br>{labels.get(col, col)} %{{z:.3f}}<extra></extra>",
            ), row=r, col=k)
            fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=11), row=r, col=k)
            fig.update_xaxes(title_text="layer", row=r, col=k)
    if c:
        mark_layers(fig, c, rows_cols=[(r, k) for r in range(1, len(pair_keys) + 1)
                                        for k in range(1, len(columns) + 1)], labels_above=True)
    fig.update_layout(title=dict(text=title), template="plotly_white",
                      height=len(pair_keys) * (n_max * 16 + 110) + 80, margin=dict(t=90))
    return fig
