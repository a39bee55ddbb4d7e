"""Checks that a figure's y axes show what is drawn on them.

Two rules, checked on the figure object (no browser needed):

1. An axis with a fixed range (``range`` set and autorange off) contains every finite y
   value of every trace drawn on it (lines, CI bands, bars with their error bars); on a log
   axis, every positive value (zeros cannot be drawn there). Heatmaps are checked against
   their colour range (``zmin``/``zmax``) instead.
2. Axes tied together by ``matches`` show the same quantity: their titles agree (the
   title of the axis it matches; an untitled axis takes the quantity of its traces, read
   from their names: ``P(...)`` is a probability, ``entropy`` is bits).

``axis_problems(fig)`` returns one sentence per violation; an empty list means the figure
passes. The test suite runs it over every figure dftlens builds.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

__all__ = ["axis_problems", "axis_quantity"]


def _floats(values) -> np.ndarray:
    if values is None:
        return np.array([])
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.array(out)


def _trace_values(trace) -> np.ndarray:
    y = _floats(getattr(trace, "y", None))
    err = getattr(trace, "error_y", None)
    if err is not None and err.visible and err.array is not None and len(y):
        e = _floats(err.array)
        if len(e) == len(y):
            y = np.concatenate([y, y + e, y - (_floats(err.arrayminus) if err.arrayminus is not None else e)])
    return y


def _axis_key(ref: str | None) -> str:
    ref = ref or "y"
    return "yaxis" + ref[1:]


def _trace_quantity(name: str | None) -> str | None:
    name = (name or "").strip()
    if name.startswith("P("):
        return "probability"
    if name.lower().startswith("entropy"):
        return "entropy (bits)"
    return None


def axis_quantity(fig: go.Figure, key: str) -> str | None:
    """What an axis shows: its title text (line breaks removed), else the quantity its
    traces' names imply (``None`` when neither says)."""
    axis = fig.layout[key]
    title = axis.title.text if axis is not None and axis.title is not None else None
    if title:
        text = title.replace("<br>", " ")
        return "probability" if text.startswith("probability") else text
    kinds = {_trace_quantity(t.name) for t in fig.data if _axis_key(getattr(t, "yaxis", None)) == key} - {None}
    return kinds.pop() if len(kinds) == 1 else None


def axis_problems(fig: go.Figure, name: str = "figure") -> list[str]:
    """Violations of the two rules in the module docstring, one sentence each."""
    problems = []
    layout = fig.layout
    keys = [k for k in layout.to_plotly_json() if k.startswith("yaxis")]
    for trace in fig.data:
        if trace.type == "heatmap":
            z = _floats(trace.z)
            if len(z) and trace.zmin is not None and trace.zmax is not None:
                if z.min() < trace.zmin - 1e-9 or z.max() > trace.zmax + 1e-9:
                    problems.append(f"{name}: heatmap {trace.name!r} colour range [{trace.zmin}, {trace.zmax}] "
                                    f"hides values in [{z.min():.3g}, {z.max():.3g}]")
            continue
        key = _axis_key(getattr(trace, "yaxis", None))
        axis = layout[key] if key in keys or key == "yaxis" else None
        if axis is None or axis.range is None or axis.autorange is True:
            continue
        if axis.type == "category":
            continue
        values = _trace_values(trace)
        lo, hi = sorted(float(v) for v in axis.range)
        if axis.type == "log":
            values = values[values > 0]
            if not len(values):
                continue
            values = np.log10(values)
        if not len(values):
            continue
        tol = 1e-6 * max(1.0, hi - lo)
        if values.min() < lo - tol or values.max() > hi + tol:
            problems.append(f"{name}: {key} range [{lo:.3g}, {hi:.3g}]{' (log10)' if axis.type == 'log' else ''} "
                            f"hides {trace.name!r} values in [{values.min():.3g}, {values.max():.3g}]")
    for key in keys:
        axis = layout[key]
        if axis.matches:
            other = "yaxis" + axis.matches[1:]
            mine, theirs = axis_quantity(fig, key), axis_quantity(fig, other)
            if mine != theirs:
                problems.append(f"{name}: {key} ({mine}) is matched to {other} ({theirs}): different quantities")
    return problems
