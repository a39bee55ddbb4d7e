"""The layer choice's own figures: each evidence kind side by side, and the bootstrap support.

Both read ``layers.json`` (as a dict or a ``LayerChoice``): ``evidence.readings`` (one row
per kind and signal: the layer it points to, its interval) and ``evidence.support`` (per
chosen layer: the share of bootstrap resamples that chose each layer). See
:mod:`dftlens.analysis.evidence_kinds` and :mod:`dftlens.analysis.layer_bootstrap`.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .figure_axes import model_title
from .figure_data import choice_dict
from .figure_traces import mark_layers
from .figure_style import MARKER_COLORS

SIGNAL_NAMES = {"lc": "LC", "et": "ET", "window": "patching window", "switch": "language switch"}
SIGNAL_COLORS = {**MARKER_COLORS, "window": "#2ca02c", "switch": "#ff7f0e"}


def _labels() -> dict[str, str]:
    from ..analysis.evidence_kinds import KINDS

    return {name: kind.label for name, kind in KINDS.items()}


def reading_rows(choice: Any) -> list[dict]:
    """One row per reading of ``evidence.readings``: ``evidence`` (kind label), ``signal``, ``layer``, ``interval`` and ``note``."""
    readings = (choice_dict(choice).get("evidence") or {}).get("readings") or []
    labels = _labels()
    return [{"evidence": labels.get(r["kind"], r["kind"]), "signal": SIGNAL_NAMES.get(r["signal"], r["signal"]),
             "layer": r.get("layer"), "interval": r.get("interval"), "note": r.get("note", ""),
             "kind": r["kind"], "signal_key": r["signal"]} for r in readings]


def layer_evidence_figure(choice: Any) -> go.Figure | None:
    """Each evidence kind's layer (dot) with its interval (bar) against the chosen LC/ET (dashed lines).

    One row per kind and signal; a kind without an answer is listed with its reason in the
    hover text and no dot. None when the choice has no readings.
    """
    c = choice_dict(choice)
    rows = reading_rows(c)
    if not rows:
        return None
    fig = go.Figure()
    names = [f"{r['evidence']}: {r['signal']}" + (f" (none: {r['note']})" if r["layer"] is None else "")
             for r in rows]  # a kind without an answer says why on its own row
    for key in dict.fromkeys(r["signal_key"] for r in rows):
        part = [(n, r) for n, r in zip(names, rows) if r["signal_key"] == key]
        x, y, lo, hi, text = [], [], [], [], []
        for name, r in part:
            layer = r["layer"]
            interval = r["interval"] or ([layer, layer] if layer is not None else None)
            x.append(layer)
            y.append(name)
            lo.append(layer - interval[0] if layer is not None else None)
            hi.append(interval[1] - layer if layer is not None else None)
            text.append(r["note"] or (f"interval {interval[0]}-{interval[1]}" if interval else ""))
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="markers", name=SIGNAL_NAMES.get(key, key), text=text,
            marker=dict(size=11, color=SIGNAL_COLORS.get(key, "#555555"), symbol="diamond"),
            error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=2, width=6),
            hovertemplate="%{y}: layer %{x}<br>%{text}<extra></extra>"))
    n_layers = c.get("n_layers")
    mark_layers(fig, c)
    fig.update_layout(
        title=f"Layer evidence side by side{model_title(c)}", template="plotly_white",
        height=160 + 42 * len(rows), margin=dict(l=20, r=20, t=60, b=50),
        xaxis=dict(title="layer (0-based block index)", dtick=1 if (n_layers or 0) <= 40 else None,
                   range=[-0.5, n_layers - 0.5] if n_layers else None),
        yaxis=dict(title="", autorange="reversed", categoryorder="array", categoryarray=names),
        legend=dict(orientation="h", y=-0.25 if len(rows) > 3 else -0.5))
    return fig


def support_figure(choice: Any) -> go.Figure | None:
    """Bars: the share of bootstrap resamples that chose each layer, for LC and ET; None without support."""
    c = choice_dict(choice)
    ev = c.get("evidence") or {}
    support = ev.get("support") or {}
    if not support:
        return None
    fig = go.Figure()
    n = None
    for signal, s in support.items():
        shares = {int(k): float(v) for k, v in s["shares"].items()}
        n = s.get("n_resamples", n)
        lo, hi = s["interval"]
        fig.add_trace(go.Bar(
            x=list(shares), y=list(shares.values()), name=f"{signal.upper()} (chose {s['layer']}; "
                                                          f"interval {lo}-{hi})",
            marker_color=MARKER_COLORS.get(signal, "#555555"), width=[0.4] * len(shares),
            offset=-0.4 if signal == "lc" else 0.0,  # LC left of the tick, ET right: side by side, one layer wide
            hovertemplate=f"{signal.upper()}: layer %{{x}} in %{{y:.0%}} of resamples<extra></extra>"))
    floor = (ev.get("params") or {}).get("min_support")
    if floor is not None:
        fig.add_hline(y=floor, line=dict(color="#555555", dash="dot", width=1),
                      annotation_text=f"provisional below {floor:.0%}", annotation_position="top right")
    n_layers = c.get("n_layers")
    mark_layers(fig, c)
    fig.update_layout(
        title=f"Bootstrap support of the choice ({n} resamples of items){model_title(c)}", template="plotly_white",
        barmode="overlay", height=360, margin=dict(l=60, r=20, t=60, b=90),
        xaxis=dict(title="layer (0-based block index)", dtick=1 if (n_layers or 0) <= 40 else None,
                   range=[-0.5, n_layers - 0.5] if n_layers else None),
        yaxis=dict(title="share of resamples", range=[0, 1.05], tickformat=".0%"),
        legend=dict(orientation="h", y=-0.3))
    return fig
