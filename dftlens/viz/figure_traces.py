"""Drawing on a figure: a line with its 95% CI band and hover, and the LC / ET layer markers.

See :mod:`.figures` for the conventions every figure follows.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go

from .figure_data import as_numbers, has_numbers, layer_or_none
from .figure_style import MARKER_COLORS, rgba


def _band(x: list, lo: list, hi: list, color: str, group: str, name: str, alpha: float = 0.18) -> go.Scatter | None:
    """A closed polygon between lo and hi (95% CI), skipping layers without a CI."""
    pts = [(xi, l, h) for xi, l, h in zip(x, lo, hi) if l is not None and h is not None]
    if not pts:
        return None
    xs = [p[0] for p in pts]
    return go.Scatter(
        x=xs + xs[::-1], y=[p[2] for p in pts] + [p[1] for p in pts][::-1],
        fill="toself", fillcolor=rgba(color, alpha), line=dict(width=0), mode="lines",
        hoverinfo="skip", showlegend=False, legendgroup=group, name=name,
    )


def hover_data(frame: pd.DataFrame, lo_col: str | None, hi_col: str | None) -> tuple[list, str]:
    """customdata [lo, hi, n_items] and the matching hover template fragment."""
    lo = as_numbers(frame[lo_col]) if lo_col and lo_col in frame.columns else [None] * len(frame)
    hi = as_numbers(frame[hi_col]) if hi_col and hi_col in frame.columns else [None] * len(frame)
    n = as_numbers(frame["n_items"]) if "n_items" in frame.columns else [None] * len(frame)
    custom = [[a, b, c] for a, b, c in zip(lo, hi, n)]
    parts = []
    if any(v is not None for v in lo):
        parts.append("95% CI [%{customdata[0]:.3f}, %{customdata[1]:.3f}]")
    if any(v is not None for v in n):
        parts.append("n_items=%{customdata[2]:.0f}")
    return custom, "<br>".join(parts)


def add_line(fig, frame, col, lo_col, hi_col, *, name, color, group, showlegend, dash="solid",
              row=None, col_idx=None, label=None, band=True, fmt=".3f"):
    """A line with its CI band (drawn first, so the line sits on top)."""
    if not has_numbers(frame, col):
        return False
    x = as_numbers(frame["layer"])
    y = as_numbers(frame[col])
    where = dict(row=row, col=col_idx) if row is not None else {}
    if band and lo_col and hi_col and has_numbers(frame, lo_col, hi_col):
        poly = _band(x, as_numbers(frame[lo_col]), as_numbers(frame[hi_col]), color, group, f"{name} 95% CI")
        if poly is not None:
            fig.add_trace(poly, **where)
    custom, extra = hover_data(frame, lo_col, hi_col)
    label = label or name
    template = f"<b>{label}</b><br>layer %{{x}}<br>%{{y:{fmt}}}" + (f"<br>{extra}" if extra else "") + "<extra></extra>"
    fig.add_trace(go.Scatter(
        x=x, y=y, mode="lines+markers", name=name, legendgroup=group, showlegend=showlegend,
        line=dict(color=color, dash=dash, width=2), marker=dict(size=4),
        customdata=custom, hovertemplate=template,
    ), **where)
    return True


def _cell_refs(fig: go.Figure, rc: tuple[int, int] | None) -> tuple[str, str]:
    """The (xref, y-domain ref) of a subplot cell, or of the only axes when ``rc`` is None."""
    if rc is None:
        return "x", "y domain"
    sub = fig.get_subplot(*rc)
    x = sub.xaxis.plotly_name.replace("axis", "")
    y = sub.yaxis.plotly_name.replace("axis", "")
    return x, f"{y} domain"


def mark_layers(fig, choice: Mapping, *, rows_cols: Iterable[tuple[int, int]] | None = None,
                 annotate: set[tuple[int, int]] | None = None, dash: str = "dash", suffix: str = "",
                 labels_above: bool = False) -> None:
    """Dashed vertical lines at the LC and ET layers, labelled in the panels ``annotate``.

    ``labels_above``: the labels sit just above the panel instead of inside its top edge (for
    heatmaps, whose top row is data a label box would hide).

    Shapes and labels are built as plain dicts and added in one layout update: plotly's
    ``add_vline`` per subplot is two orders of magnitude slower on faceted figures.
    """
    shapes, notes = [], []
    targets = list(rows_cols) if rows_cols is not None else [None]
    for kind in ("lc", "et"):
        layer = layer_or_none(choice.get(f"{kind}_layer"))
        if layer is None:
            continue
        label = f"{kind.upper()}{suffix} {layer}"
        color = MARKER_COLORS[kind]
        for rc in targets:
            xref, yref = _cell_refs(fig, rc)
            shapes.append(dict(type="line", x0=layer, x1=layer, y0=0, y1=1, xref=xref, yref=yref,
                               line=dict(color=color, dash=dash, width=1.5), opacity=0.9, layer="above"))
            if annotate is None or rc in annotate:
                # LC's label sits right of its line, ET's left, so the two never collide.
                right = kind == "lc"
                notes.append(dict(text=label, x=layer, y=1, xref=xref, yref=yref, showarrow=False,
                                  xanchor="left" if right else "right", yanchor="bottom" if labels_above else "top",
                                  xshift=3 if right else -3,
                                  font=dict(color=color, size=11), bgcolor="rgba(255,255,255,0.7)"))
    if shapes:
        fig.update_layout(shapes=list(fig.layout.shapes) + shapes,
                          annotations=list(fig.layout.annotations) + notes)
