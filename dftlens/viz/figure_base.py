"""Building blocks of the probe figures: choice handling, facets, CI bands, LC/ET markers, y ranges.

See :mod:`.figures` for the conventions every figure follows.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .figure_style import MARKER_COLORS, FACET_COLS

# --------------------------------------------------------------------------- helpers


def choice_dict(choice: Any) -> dict:
    """The layer choice as a plain dict: accepts None, a dict (``layers.json``), or an
    object with ``to_dict()`` or ``lc_layer`` / ``et_layer`` attributes."""
    if choice is None:
        return {}
    if isinstance(choice, Mapping):
        return dict(choice)
    if hasattr(choice, "to_dict"):
        return dict(choice.to_dict())
    out = {}
    for key in ("model", "n_layers", "lc_layer", "et_layer", "hooks", "languages", "evidence"):
        if hasattr(choice, key):
            out[key] = getattr(choice, key)
    return out


def _layer_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, float) and math.isnan(value):
            return None
        return int(value)
    except (TypeError, ValueError):
        return None


def entropy_ci_columns(frame: pd.DataFrame) -> tuple[str, str]:
    """The entropy CI columns: ``entropy_bits_lo/_hi`` (the probe's summarise) or ``entropy_lo/_hi``."""
    for lo, hi in (("entropy_bits_lo", "entropy_bits_hi"), ("entropy_lo", "entropy_hi")):
        if lo in frame.columns and hi in frame.columns:
            return lo, hi
    return "entropy_bits_lo", "entropy_bits_hi"


def rgba(hex_color: str, alpha: float) -> str:
    """``"#rrggbb"`` and an opacity in [0, 1] -> plotly's ``"rgba(r,g,b,alpha)"`` string (CI band fills)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def has_numbers(df: pd.DataFrame, *cols: str) -> bool:
    """True when every column exists and holds at least one number."""
    return all(c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any() for c in cols)


def as_numbers(series: pd.Series) -> list:
    """Numbers as a list with NaN turned into None (plotly draws gaps for None)."""
    values = pd.to_numeric(series, errors="coerce")
    return [None if pd.isna(v) else float(v) for v in values]


def pair_key(pair: Any) -> tuple[str, str]:
    """("fr", "zh"), "fr:zh", "fr-zh" or "fr->zh" -> ("fr", "zh")."""
    if isinstance(pair, str):
        for sep in ("->", "→", ":", "-"):
            if sep in pair:
                a, b = pair.split(sep, 1)
                return a.strip(), b.strip()
        raise ValueError(f"Cannot read language pair {pair!r}; write it as 'fr:zh' or ('fr', 'zh').")
    a, b = pair
    return str(a), str(b)


def filter_lens(lens_df: pd.DataFrame, task=None, pairs=None, subset: str | None = "all") -> pd.DataFrame:
    """The per-layer lens summary rows to draw: one ``subset``, then ``task`` and ``pairs``.

    Args:
        lens_df: the probe's per-layer summary (``lens.csv`` / ``result.lens``), one row per
            task, language pair and layer (and subset, when it has a ``subset`` column).
        task: a task name or names; None keeps every task.
        pairs: language pairs in any form :func:`pair_key` reads; None keeps every pair.
        subset: the value of the ``subset`` column to keep (``"all"``: every item); None keeps
            every row (for tables without subsets).

    Raises:
        ValueError: the table lacks one of ``task``, ``input_lang``, ``target_lang``, ``layer``;
            it has several rows per task, pair and layer (per-item rows, or several subsets);
            or a pair cannot be read.
    """
    if "subset" in lens_df.columns and subset is not None:
        lens_df = lens_df[lens_df["subset"].astype(str) == subset]
    missing = [c for c in (*FACET_COLS, "layer") if c not in lens_df.columns]
    if missing:
        raise ValueError(f"lens table lacks column(s) {', '.join(missing)}; is it the probe's lens.csv?")
    if lens_df.duplicated([*FACET_COLS, "layer"]).any():
        raise ValueError("lens table has several rows per task, pair and layer: pass the per-layer summary "
                         "(lens.csv / result.lens) of one subset, not the per-item rows.")
    df = lens_df
    if task is not None:
        tasks = [task] if isinstance(task, str) else list(task)
        df = df[df["task"].isin(tasks)]
    if pairs is not None:
        keys = {pair_key(p) for p in pairs}
        mask = [(i, t) in keys for i, t in zip(df["input_lang"].astype(str), df["target_lang"].astype(str))]
        df = df[mask]
    return df


_TASK_ORDER = ("translation", "repetition", "cloze")


def facet_keys(lens_df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (task, input_lang, target_lang) combinations: translation, repetition, cloze (then
    any other task), and within a task in the table's order."""
    seen: dict[tuple[str, str, str], None] = {}
    for row in lens_df[list(FACET_COLS)].astype(str).itertuples(index=False):
        seen.setdefault(tuple(row), None)
    rank = {task: i for i, task in enumerate(_TASK_ORDER)}
    return sorted(seen, key=lambda key: rank.get(key[0], len(rank)))


def facet_frame(df: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    """The rows of one ``(task, input_lang, target_lang)`` facet of ``df``, sorted by layer."""
    task, src, tgt = key
    sub = df[(df["task"].astype(str) == task) & (df["input_lang"].astype(str) == src)
             & (df["target_lang"].astype(str) == tgt)]
    return sub.sort_values("layer")


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
        layer = _layer_or_none(choice.get(f"{kind}_layer"))
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
    n = _layer_or_none(choice.get("n_layers"))
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


# --------------------------------------------------------------------------- y ranges

PROB_AXES = ("full", "auto", "log")
LOG_FLOOR = 1e-6  # the log view's lower edge at most: smaller masses are drawn at this floor
# (colour role, probability column, legend label) of the latent-language lines (Wendler et al. 2024, Fig. 3).
LATENT_ROLES = (("en", "p_en", "English"), ("target", "p_target", "target"), ("input", "p_input", "input"))


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
