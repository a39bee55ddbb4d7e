"""Axes and layout of a figure: titles, subplot grids, layer axes, probability ranges, legends.

See :mod:`.figures` for the conventions every figure follows.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .figure_data import has_numbers, layer_or_none


def facet_title(key: tuple[str, str, str], frame: pd.DataFrame | None = None) -> str:
    """A facet's panel title, ``"task: src → tgt"``, with ``" (n=k)"`` (or ``" (n=lo–hi)"`` when the
    count varies over layers) from ``frame``'s ``n_items`` column when it has numbers.
    """
    task, src, tgt = key
    title = f"{task}: {src} → {tgt}"
    if frame is not None and has_numbers(frame, "n_items"):
        n = pd.to_numeric(frame["n_items"], errors="coerce").dropna()
        lo, hi = int(n.min()), int(n.max())
        title += f" (n={lo})" if lo == hi else f" (n={lo}–{hi})"
    return title


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """``(rows, cols)`` of a subplot grid for ``n`` panels with at most ``max_cols`` columns (at least one)."""
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def model_title(choice: Mapping) -> str:
    """``" — {model}"`` to append to a figure title when the choice names a model, else ``""``."""
    model = choice.get("model")
    return f" — {model}" if model else ""


def layer_x_range(frames: Sequence[pd.DataFrame], choice: Mapping) -> list[float] | None:
    """The layer axis range ``[-0.5, top + 0.5]``: ``top`` is the largest layer in ``frames`` or
    ``n_layers - 1`` of the choice, whichever is larger; None when neither gives a layer.
    """
    layers = [pd.to_numeric(f["layer"], errors="coerce").max() for f in frames if len(f)]
    top = max([v for v in layers if pd.notna(v)], default=None)
    n = layer_or_none(choice.get("n_layers"))
    if n is not None:
        top = max(top if top is not None else 0, n - 1)
    return None if top is None else [-0.5, float(top) + 0.5]


def layer_ticks(x_range: list[float] | None, cols: int = 1) -> dict:
    """Integer layer ticks, as dense as the panel width allows (about 20 per full width)."""
    if not x_range:
        return {}
    n = x_range[1] - x_range[0]
    return dict(tick0=0, dtick=max(1, math.ceil(n / (20 / max(1, cols)))))


def empty_figure(title: str, message: str) -> go.Figure:
    """A blank 300 px high figure with ``title`` and ``message`` in its middle (drawn when there is
    nothing to plot, instead of raising).
    """
    fig = go.Figure()
    fig.update_layout(title=dict(text=title), template="plotly_white", height=300,
                      annotations=[dict(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)])
    return fig


PROB_AXES = ("full", "auto", "log")
LOG_FLOOR = 1e-6  # the log view's lower edge at most: smaller masses are drawn at this floor


def _values(frames: Iterable[pd.DataFrame], columns: Iterable[str]) -> np.ndarray:
    cols = list(columns)
    parts = [pd.to_numeric(f[c], errors="coerce").to_numpy(float) for f in frames for c in cols if c in f.columns]
    values = np.concatenate(parts) if parts else np.array([])
    return values[np.isfinite(values)]


def fit_range(frames: Iterable[pd.DataFrame], columns: Iterable[str], pad: float = 0.05) -> list[float]:
    """An explicit y range from min(0, smallest) to the largest value in ``columns`` (plus
    ``pad`` of the span), so every value and CI drawn on the axis is inside it."""
    values = _values(frames, columns)
    if not len(values):
        return [0.0, 1.0]
    lo, hi = min(0.0, float(values.min())), float(values.max())
    span = (hi - lo) or 1.0
    return [lo - (pad * span if lo < 0 else 0.0), hi + pad * span]


def probability_axis(frames: Sequence[pd.DataFrame], columns: Iterable[str], mode: str = "full") -> dict:
    """y-axis properties for probabilities: ``"full"`` fixes [0, 1] (the paper's view),
    ``"auto"`` zooms to [0, largest value or CI bound shown] (never past 1), ``"log"`` a
    log10 axis from the decade below the smallest positive mean shown, but not below
    ``LOG_FLOOR``, to 1; values and CI bounds under its lower edge are drawn at that edge
    (the axis title says so), so nothing falls off the axis."""
    cols = list(columns)
    if mode == "full":
        return dict(range=[0.0, 1.0], type="linear")
    if mode == "auto":
        top = fit_range(frames, [*cols, *(f"{c}_hi" for c in cols)])[1]
        return dict(range=[0.0, min(1.0, top)], type="linear")
    if mode == "log":
        values = _values(frames, cols)
        values = values[values > 0]
        low = max(LOG_FLOOR, float(values.min())) if len(values) else LOG_FLOOR
        # Ticks as powers of ten (10^-4), never SI prefixes ("100μ"), which mean nothing for a probability.
        return dict(type="log", range=[math.floor(math.log10(low)), 0.0], exponentformat="power", dtick=1)
    raise ValueError(f"prob_axis must be one of {', '.join(PROB_AXES)}, not {mode!r}.")


def legend_name(i: int) -> str:
    """The layout key of the ``i``-th legend (0-based): ``"legend"``, ``"legend2"``, ``"legend3"``, ..."""
    return "legend" if i == 0 else f"legend{i + 1}"


def panel_legends(fig: go.Figure, cells: Sequence[tuple[tuple[int, int], str]], *, below: bool = True,
                   drop: float = 0.08) -> dict:
    """One legend per panel (plotly's multiple legends), placed under (or right of) its panel,
    so a panel with many lines lists them next to it instead of in one long scrolling list.
    ``cells``: ((row, col), legend title) per panel, in legend order; ``drop``: how far below
    the panel (paper units) a legend starts. Returns layout props."""
    props = {}
    for i, (rc, heading) in enumerate(cells):
        sub = fig.get_subplot(*rc)
        xdom, ydom = sub.xaxis.domain, sub.yaxis.domain
        where = (dict(x=xdom[0], y=ydom[0] - drop, xanchor="left", yanchor="top", orientation="h") if below
                 else dict(x=1.01, y=ydom[1], xanchor="left", yanchor="top"))
        props[legend_name(i)] = dict(title=dict(text=heading), font=dict(size=11), tracegroupgap=2,
                                      bgcolor="rgba(255,255,255,0.8)", **where)
    return props
