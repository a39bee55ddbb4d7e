"""The latent-language figure (Wendler et al. 2024): P(English) and P(target) per layer, one model or several."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figure_axes import (
    PROB_AXES, empty_figure, facet_title, fit_range, grid_shape, layer_ticks, layer_x_range, model_title,
    probability_axis,
)
from .figure_data import choice_dict, entropy_ci_columns, facet_frame, facet_keys, filter_lens, has_numbers
from .figure_style import DASHES, LATENT_ROLES, ROLE_LABELS, shade
from .figure_traces import add_line, mark_layers

# --------------------------------------------------------------------------- latent language


Frames = Sequence[tuple[str, pd.DataFrame, str]]  # (model label, lens rows, line style) per model
Cell = tuple[int, int]  # (row, col) of a subplot


def _on_log_axis(frames: Frames, prob_cols: Sequence[str], floor: float) -> list[tuple[str, pd.DataFrame, str]]:
    """The frames as the log view draws them: masses (and CI bounds) under the axis' lower edge
    ``floor`` at that edge; a mean of exactly 0 has no place on a log axis, so it is not drawn (a gap)."""
    return [(label, df.assign(**{col: (df[col].mask(df[col] == 0) if col == c else df[col]).clip(lower=floor)
                                 for c in prob_cols for col in (c, f"{c}_lo", f"{c}_hi")
                                 if col in df.columns}), dash)
            for label, df, dash in frames]


def _grid(frames: Frames, keys: list[tuple[str, str, str]], *, entropy: bool,
          max_cols: int) -> tuple[go.Figure, int, int, dict]:
    """The empty subplot grid with a title per facet: returns (figure, columns, height px, margin).

    Explicit vertical domains: each facet is a block (probabilities on top, entropy right below,
    a small gap between them) and blocks are separated by room for the next panel's title and
    the "layer" axis title. Unused cells of the grid get no axes.
    """
    facet_rows, cols = grid_shape(len(keys), max_cols)
    per = 2 if entropy else 1
    fig = make_subplots(rows=facet_rows * per, cols=cols, horizontal_spacing=0.07 if cols > 1 else 0.0,
                        vertical_spacing=0.0)
    height = (430 if entropy else 330) * facet_rows + 40
    margin = dict(t=90, l=70, r=30, b=50)
    plot_px = height - margin["t"] - margin["b"]
    gap_blocks = 95 / plot_px
    gap_inner = 14 / plot_px
    block = (1 - (facet_rows - 1) * gap_blocks) / facet_rows
    titles = []
    for f in range(facet_rows):
        top = 1 - f * (block + gap_blocks)
        if entropy:
            prob_h = (block - gap_inner) * 0.68
            domains = [[top - prob_h, top], [top - block, top - prob_h - gap_inner]]
        else:
            domains = [[top - block, top]]
        for c in range(1, cols + 1):
            i = f * cols + c - 1
            for k, dom in enumerate(domains):
                axis = fig.get_subplot(f * per + k + 1, c).yaxis
                axis.domain = [max(0.0, dom[0]), min(1.0, dom[1])]
            if i >= len(keys):  # an unused cell of the grid: no empty axes
                for k in range(per):
                    sub = fig.get_subplot(f * per + k + 1, c)
                    sub.xaxis.visible = False
                    sub.yaxis.visible = False
            else:
                xdom = fig.get_subplot(f * per + 1, c).xaxis.domain
                frame = facet_frame(frames[0][1], keys[i]) if len(frames) == 1 else None
                titles.append(dict(text=f"<b>{facet_title(keys[i], frame)}</b>", x=(xdom[0] + xdom[1]) / 2,
                                   y=min(1.0, top), xref="paper", yref="paper", xanchor="center",
                                   yanchor="bottom", showarrow=False, font=dict(size=14)))
    for t in titles:
        fig.add_annotation(**t)
    return fig, cols, height, margin


def _draw_facets(fig: go.Figure, frames: Frames, keys: list[tuple[str, str, str]], cols: int,
                 entropy: bool) -> tuple[list[Cell], list[Cell]]:
    """Each facet's P(English), P(target), P(input) lines (and entropy row) for every model;
    returns the probability cells and all cells (probability and entropy)."""
    single, per = len(frames) == 1, 2 if entropy else 1
    legend_seen: set[str] = set()
    prob_cells, all_cells = [], []
    for i, key in enumerate(keys):
        r0 = (i // cols) * per + 1
        c = i % cols + 1
        prob_cells.append((r0, c))
        all_cells.append((r0, c))
        if entropy:
            all_cells.append((r0 + 1, c))
        task, src, tgt = key
        for m, (label, df, dash) in enumerate(frames):
            frame = facet_frame(df, key)
            if frame.empty:
                continue
            roles = [("en", "p_en", "English (en)")]
            if tgt != "en":
                roles.append(("target", "p_target", f"target ({tgt})"))
            if src not in ("en", tgt):
                roles.append(("input", "p_input", f"input ({src})"))
            for role, col, hover in roles:
                legend = ROLE_LABELS[role] if single else f"{ROLE_LABELS[role]} · {label}"
                group = f"{role}|{label}"
                add_line(fig, frame, col, f"{col}_lo", f"{col}_hi", name=f"P({legend})", color=shade(role, m),
                          group=group, showlegend=group not in legend_seen, dash=dash, row=r0, col_idx=c,
                          label=f"P({hover})" + ("" if single else f" · {label}"))
                if has_numbers(frame, col):
                    legend_seen.add(group)
            if entropy:
                group = f"entropy|{label}"
                ok = add_line(fig, frame, "entropy_bits", *entropy_ci_columns(frame),
                               name="entropy (bits)" if single else f"entropy · {label}", color=shade("entropy", m),
                               group=group, showlegend=group not in legend_seen, dash=dash, row=r0 + 1, col_idx=c,
                               label="entropy (bits)" + ("" if single else f" · {label}"), fmt=".2f")
                if ok:
                    legend_seen.add(group)
    return prob_cells, all_cells


def _set_axes(fig: go.Figure, frames: Frames, choices: Sequence[tuple[str, Mapping]], prob_cells: list[Cell],
              cols: int, *, entropy: bool, prob_axis: str, prob_axis_props: dict) -> None:
    """x ticks and "layer" only on the lowest row of each facet; the entropy row zooms with its
    probability row along x. y ranges are computed here, never matched across panels:
    probability axes share one explicit range (0..1, or the log view), entropy axes another
    that fits every entropy value and CI drawn."""
    x_range = layer_x_range([f for _, f, _ in frames], choices[0][1] if choices else {})
    axes: dict[str, dict] = {}  # one layout update for all axes (per-axis updates are slow)
    common_x = dict(range=x_range, zeroline=False, **layer_ticks(x_range, cols))

    def axis(rc: Cell, which: str, **props) -> None:
        sub = fig.get_subplot(*rc)
        name = (sub.xaxis if which == "x" else sub.yaxis).plotly_name
        axes.setdefault(name, dict(common_x) if which == "x" else {}).update(props)

    data = [f for _, f, _ in frames]
    ent_axis_props = dict(range=fit_range(data, ["entropy_bits", *entropy_ci_columns(data[0])]))
    for (r0, c) in prob_cells:
        edge = int(prob_axis_props["range"][0])
        log_note = f" (log)<br>0 not drawn; ≤1e{edge} on the edge" if prob_axis == "log" else ""
        axis((r0, c), "y", title=dict(text="probability" + log_note),
             **prob_axis_props)
        if entropy:
            top = fig.get_subplot(r0, c).xaxis.plotly_name.replace("axis", "")
            axis((r0, c), "x", showticklabels=False)
            axis((r0 + 1, c), "y", title=dict(text="entropy<br>(bits)"), **ent_axis_props)
            axis((r0 + 1, c), "x", title=dict(text="layer"), matches=top)
        else:
            axis((r0, c), "x", title=dict(text="layer"))
    fig.update_layout(**axes)


def _latent(frames: Frames, *, title: str, choices: Sequence[tuple[str, Mapping]],
            entropy: bool, max_cols: int, prob_axis: str = "full") -> go.Figure:
    """The latent-language figure of one model or several (``frames``), with each ``choices``
    entry's LC / ET markers: one choice dashed, one per model in that model's line style."""
    if prob_axis not in PROB_AXES:
        raise ValueError(f"prob_axis must be one of {', '.join(PROB_AXES)}, not {prob_axis!r}.")
    keys: list[tuple[str, str, str]] = []
    for _, df, _ in frames:
        for k in facet_keys(df):
            if k not in keys:
                keys.append(k)
    if not keys:
        return empty_figure(title, "No lens rows to plot (check the task / pairs filter).")

    prob_cols = [c for _, c, _ in LATENT_ROLES]
    prob_axis_props = probability_axis([f for _, f, _ in frames], prob_cols, prob_axis)
    if prob_axis == "log":
        frames = _on_log_axis(frames, prob_cols, 10 ** prob_axis_props["range"][0])
    fig, cols, height, margin = _grid(frames, keys, entropy=entropy, max_cols=max_cols)
    prob_cells, all_cells = _draw_facets(fig, frames, keys, cols, entropy)
    _set_axes(fig, frames, choices, prob_cells, cols, entropy=entropy, prob_axis=prob_axis,
              prob_axis_props=prob_axis_props)
    model_dash = {label: dash for label, _, dash in frames}
    for label, choice in choices:
        if not choice:
            continue
        suffix = "" if len(choices) == 1 else f" ({label})"
        dash = "dash" if len(choices) == 1 else model_dash.get(label, "dash")
        mark_layers(fig, choice, rows_cols=all_cells, annotate=set(prob_cells), dash=dash, suffix=suffix)
    fig.update_layout(title=dict(text=title), template="plotly_white", hovermode="closest", height=height,
                      margin=margin, legend=dict(tracegroupgap=4))
    return fig


def latent_language_figure(lens_df: pd.DataFrame, task: str | Sequence[str] | None = None,
                           pairs: Sequence | None = None, choice: Any = None, *, entropy: bool = True,
                           max_cols: int = 3, prob_axis: str = "full", title: str | None = None,
                           subset: str = "all") -> go.Figure:
    """Wendler et al.'s latent-language plot: logit-lens P(English), P(target) and, where it
    differs, P(input) per layer with shaded 95% CI bands, one panel per (task, input → target),
    and the logit-lens entropy (bits) in a row below each panel.

    ``task`` keeps one task (or a list); ``pairs`` keeps some (input, target) pairs, given as
    tuples or ``"fr:zh"`` strings. ``choice`` (``layers.json`` dict or ``LayerChoice``) adds the
    LC and ET markers. Hover shows the value, its CI and ``n_items``. All probability panels
    share one explicit scale: ``prob_axis="full"`` (default) fixes it to [0, 1] as in the paper,
    ``"auto"`` runs it from 0 to the largest value or CI bound shown, ``"log"`` is a log10 view
    that shows the small masses an averaged curve hides. All entropy rows share a range fitted
    to their data. ``subset`` picks the ``all`` or ``correct`` rows when the table has a
    ``subset`` column (default ``"all"``).
    """
    c = choice_dict(choice)
    df = filter_lens(lens_df, task, pairs, subset)
    what = "" if subset == "all" else f", items answered {subset}ly" if subset == "correct" else f", {subset}"
    scale = ", log scale" if prob_axis == "log" else ""
    title = title or f"Latent language per layer (logit lens{what}{scale}){model_title(c)}"
    return _latent([("", df, "solid")], title=title, choices=[("", c)] if c else [], entropy=entropy,
                   max_cols=max_cols, prob_axis=prob_axis)


def compare_latent_figure(lens_by_model: Mapping[str, pd.DataFrame], task: str | Sequence[str] | None = None,
                          pairs: Sequence | None = None, choice: Any = None, *, entropy: bool = True,
                          max_cols: int = 3, prob_axis: str = "full", title: str | None = None,
                          subset: str = "all") -> go.Figure:
    """Overlay two or more models' latent-language curves (e.g. before and after DFT).

    Colours keep meaning the language (English blue, target red, input green); the line
    style says the model: the first model solid, the second dashed, then dotted, ...
    ``choice`` is one layer choice for all models, or a dict ``{model label: choice}``.
    """
    if not lens_by_model:
        raise ValueError("compare_latent_figure needs at least one model's lens table.")
    frames = [(str(label), filter_lens(df, task, pairs, subset), DASHES[i % len(DASHES)])
              for i, (label, df) in enumerate(lens_by_model.items())]
    if isinstance(choice, Mapping) and choice and set(choice) <= set(map(str, lens_by_model)) \
            and not ({"lc_layer", "et_layer"} & set(choice)):
        choices = [(str(k), choice_dict(v)) for k, v in choice.items()]
    else:
        c = choice_dict(choice)
        choices = [("", c)] if c else []
    names = " vs ".join(label for label, _, _ in frames)
    title = title or f"Latent language per layer: {names}"
    return _latent(frames, title=title, choices=choices, entropy=entropy, max_cols=max_cols, prob_axis=prob_axis)
