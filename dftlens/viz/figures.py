"""Plotly figures for the probe's outputs.

Every function here is pure: it takes the DataFrames the probe writes (``lens.csv``,
``probes.csv``) and the layer choice (``layers.json`` as a dict, or the
``LayerChoice`` object) and returns a :class:`plotly.graph_objects.Figure`. Nothing
is computed beyond grouping and formatting, so a figure always shows exactly the
numbers in the files.

Conventions shared by all figures:

- x is the 0-based block index (the ``layer`` column), the same numbering as
  ``lc_layer`` / ``et_layer`` and the hook names ``blocks.{i}.hook_resid_post``.
- English is always blue, the target language red, the input language green;
  other classes grey. A 95% CI is a shaded band of the line's colour.
- The chosen LC and ET layers, when given, are dashed vertical lines labelled
  ``LC 3`` / ``ET 9`` in every panel.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "latent_language_figure",
    "entropy_figure",
    "token_share_figure",
    "probe_figure",
    "compare_latent_figure",
    "item_heatmap_figure",
    "probability_axis",
    "fit_range",
    "choice_dict",
    "facet_keys",
]

# Colours by language role, so every figure reads the same way.
COLORS = {
    "en": "#1f77b4",  # English: blue
    "target": "#d62728",  # target language: red
    "input": "#2ca02c",  # input language: green
    "other": "#9a9a9a",  # everything else: grey
    "entropy": "#555555",
}
# In comparison figures each model gets its own shade of the role's colour (and its own line
# style), so no two lines in a panel share a colour: dark, light, darkest, ...
SHADES = {
    "en": ("#1f77b4", "#6baed6", "#08306b", "#9ecae1"),
    "target": ("#d62728", "#fc9272", "#67000d", "#fcbba1"),
    "input": ("#2ca02c", "#74c476", "#00441b", "#a1d99b"),
    "entropy": ("#555555", "#999999", "#111111", "#bbbbbb"),
}


def _shade(role: str, model_index: int) -> str:
    shades = SHADES.get(role, (COLORS.get(role, "#555555"),))
    return shades[model_index % len(shades)]


MARKER_COLORS = {"lc": "#8c564b", "et": "#9467bd"}
# Line styles per model in comparison figures (first model solid, then dashed, ...).
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
# A qualitative palette for lines that are not language roles (tasks, pairs, probes).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")

# More distinct colours for panels with more lines than PALETTE has (plotly's Dark24).
LONG_PALETTE = PALETTE + ("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86",
                          "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32")


def line_color(i: int, n: int) -> str:
    """The colour of line ``i`` of ``n`` in one panel: distinct for up to 24 lines."""
    palette = PALETTE if n <= len(PALETTE) else LONG_PALETTE
    return palette[i % len(palette)]


ROLE_LABELS = {"en": "English", "target": "target", "input": "input"}
_FACET_COLS = ("task", "input_lang", "target_lang")


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


def _entropy_ci(frame: pd.DataFrame) -> tuple[str, str]:
    """The entropy CI columns: ``entropy_bits_lo/_hi`` (the probe's summarise) or ``entropy_lo/_hi``."""
    for lo, hi in (("entropy_bits_lo", "entropy_bits_hi"), ("entropy_lo", "entropy_hi")):
        if lo in frame.columns and hi in frame.columns:
            return lo, hi
    return "entropy_bits_lo", "entropy_bits_hi"


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _has(df: pd.DataFrame, *cols: str) -> bool:
    """True when every column exists and holds at least one number."""
    return all(c in df.columns and pd.to_numeric(df[c], errors="coerce").notna().any() for c in cols)


def _num(series: pd.Series) -> list:
    """Numbers as a list with NaN turned into None (plotly draws gaps for None)."""
    values = pd.to_numeric(series, errors="coerce")
    return [None if pd.isna(v) else float(v) for v in values]


def _pair_key(pair: Any) -> tuple[str, str]:
    """("fr", "zh"), "fr:zh", "fr-zh" or "fr->zh" -> ("fr", "zh")."""
    if isinstance(pair, str):
        for sep in ("->", "→", ":", "-"):
            if sep in pair:
                a, b = pair.split(sep, 1)
                return a.strip(), b.strip()
        raise ValueError(f"Cannot read language pair {pair!r}; write it as 'fr:zh' or ('fr', 'zh').")
    a, b = pair
    return str(a), str(b)


def _filter_lens(lens_df: pd.DataFrame, task=None, pairs=None, subset: str | None = "all") -> pd.DataFrame:
    if "subset" in lens_df.columns and subset is not None:
        lens_df = lens_df[lens_df["subset"].astype(str) == subset]
    missing = [c for c in (*_FACET_COLS, "layer") if c not in lens_df.columns]
    if missing:
        raise ValueError(f"lens table lacks column(s) {', '.join(missing)}; is it the probe's lens.csv?")
    if lens_df.duplicated([*_FACET_COLS, "layer"]).any():
        raise ValueError("lens table has several rows per task, pair and layer: pass the per-layer summary "
                         "(lens.csv / result.lens) of one subset, not the per-item rows.")
    df = lens_df
    if task is not None:
        tasks = [task] if isinstance(task, str) else list(task)
        df = df[df["task"].isin(tasks)]
    if pairs is not None:
        keys = {_pair_key(p) for p in pairs}
        mask = [(i, t) in keys for i, t in zip(df["input_lang"].astype(str), df["target_lang"].astype(str))]
        df = df[mask]
    return df


_TASK_ORDER = ("translation", "repetition", "cloze")


def facet_keys(lens_df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (task, input_lang, target_lang) combinations: translation, repetition, cloze (then
    any other task), and within a task in the table's order."""
    seen: dict[tuple[str, str, str], None] = {}
    for row in lens_df[list(_FACET_COLS)].astype(str).itertuples(index=False):
        seen.setdefault(tuple(row), None)
    rank = {task: i for i, task in enumerate(_TASK_ORDER)}
    return sorted(seen, key=lambda key: rank.get(key[0], len(rank)))


def _facet_frame(df: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    task, src, tgt = key
    sub = df[(df["task"].astype(str) == task) & (df["input_lang"].astype(str) == src)
             & (df["target_lang"].astype(str) == tgt)]
    return sub.sort_values("layer")


def _facet_title(key: tuple[str, str, str], frame: pd.DataFrame | None = None) -> str:
    task, src, tgt = key
    title = f"{task}: {src} → {tgt}"
    if frame is not None and _has(frame, "n_items"):
        n = pd.to_numeric(frame["n_items"], errors="coerce").dropna()
        lo, hi = int(n.min()), int(n.max())
        title += f" (n={lo})" if lo == hi else f" (n={lo}–{hi})"
    return title


def _grid(n: int, max_cols: int) -> tuple[int, int]:
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
        fill="toself", fillcolor=_rgba(color, alpha), line=dict(width=0), mode="lines",
        hoverinfo="skip", showlegend=False, legendgroup=group, name=name,
    )


def _hover_data(frame: pd.DataFrame, lo_col: str | None, hi_col: str | None) -> tuple[list, str]:
    """customdata [lo, hi, n_items] and the matching hover template fragment."""
    lo = _num(frame[lo_col]) if lo_col and lo_col in frame.columns else [None] * len(frame)
    hi = _num(frame[hi_col]) if hi_col and hi_col in frame.columns else [None] * len(frame)
    n = _num(frame["n_items"]) if "n_items" in frame.columns else [None] * len(frame)
    custom = [[a, b, c] for a, b, c in zip(lo, hi, n)]
    parts = []
    if any(v is not None for v in lo):
        parts.append("95% CI [%{customdata[0]:.3f}, %{customdata[1]:.3f}]")
    if any(v is not None for v in n):
        parts.append("n_items=%{customdata[2]:.0f}")
    return custom, "<br>".join(parts)


def _add_line(fig, frame, col, lo_col, hi_col, *, name, color, group, showlegend, dash="solid",
              row=None, col_idx=None, label=None, band=True, fmt=".3f"):
    """A line with its CI band (drawn first, so the line sits on top)."""
    if not _has(frame, col):
        return False
    x = _num(frame["layer"])
    y = _num(frame[col])
    where = dict(row=row, col=col_idx) if row is not None else {}
    if band and lo_col and hi_col and _has(frame, lo_col, hi_col):
        poly = _band(x, _num(frame[lo_col]), _num(frame[hi_col]), color, group, f"{name} 95% CI")
        if poly is not None:
            fig.add_trace(poly, **where)
    custom, extra = _hover_data(frame, lo_col, hi_col)
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


def _mark_layers(fig, choice: Mapping, *, rows_cols: Iterable[tuple[int, int]] | None = None,
                 annotate: set[tuple[int, int]] | None = None, dash: str = "dash", suffix: str = "") -> None:
    """Dashed vertical lines at the LC and ET layers, labelled in the panels ``annotate``.

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
                                  xanchor="left" if right else "right", yanchor="top", xshift=3 if right else -3,
                                  font=dict(color=color, size=11), bgcolor="rgba(255,255,255,0.7)"))
    if shapes:
        fig.update_layout(shapes=list(fig.layout.shapes) + shapes,
                          annotations=list(fig.layout.annotations) + notes)


def _model_title(choice: Mapping) -> str:
    model = choice.get("model")
    return f" — {model}" if model else ""


def _x_range(frames: Sequence[pd.DataFrame], choice: Mapping) -> list[float] | None:
    layers = [pd.to_numeric(f["layer"], errors="coerce").max() for f in frames if len(f)]
    top = max([v for v in layers if pd.notna(v)], default=None)
    n = _layer_or_none(choice.get("n_layers"))
    if n is not None:
        top = max(top if top is not None else 0, n - 1)
    return None if top is None else [-0.5, float(top) + 0.5]


def _ticks(x_range: list[float] | None, cols: int = 1) -> dict:
    """Integer layer ticks, as dense as the panel width allows (about 20 per full width)."""
    if not x_range:
        return {}
    n = x_range[1] - x_range[0]
    return dict(tick0=0, dtick=max(1, math.ceil(n / (20 / max(1, cols)))))


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title), template="plotly_white", height=300,
                      annotations=[dict(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)])
    return fig


# --------------------------------------------------------------------------- y ranges

PROB_AXES = ("full", "auto", "log")
_LATENT_ROLES = (("en", "p_en", "English"), ("target", "p_target", "target"), ("input", "p_input", "input"))


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
    log10 axis from the decade below the smallest positive mean shown to 1 (CI bands are
    clipped there). Zeros cannot be drawn on the log view."""
    cols = list(columns)
    if mode == "full":
        return dict(range=[0.0, 1.0], type="linear")
    if mode == "auto":
        top = fit_range(frames, [*cols, *(f"{c}_hi" for c in cols)])[1]
        return dict(range=[0.0, min(1.0, top)], type="linear")
    if mode == "log":
        values = _values(frames, cols)
        values = values[values > 0]
        low = float(values.min()) if len(values) else 1e-6
        return dict(type="log", range=[math.floor(math.log10(low)), 0.0])
    raise ValueError(f"prob_axis must be one of {', '.join(PROB_AXES)}, not {mode!r}.")


# --------------------------------------------------------------------------- latent language


def _latent(frames: Sequence[tuple[str, pd.DataFrame, str]], *, title: str, choices: Sequence[tuple[str, Mapping]],
            entropy: bool, max_cols: int, prob_axis: str = "full") -> go.Figure:
    if prob_axis not in PROB_AXES:
        raise ValueError(f"prob_axis must be one of {', '.join(PROB_AXES)}, not {prob_axis!r}.")
    keys: list[tuple[str, str, str]] = []
    for _, df, _ in frames:
        for k in facet_keys(df):
            if k not in keys:
                keys.append(k)
    if not keys:
        return _empty(title, "No lens rows to plot (check the task / pairs filter).")

    single = len(frames) == 1
    prob_cols = [c for _, c, _ in _LATENT_ROLES]
    prob_axis_props = probability_axis([f for _, f, _ in frames], prob_cols, prob_axis)
    if prob_axis == "log":  # CI bands reaching 0 would vanish on a log axis: clip them at its floor
        floor = 10 ** prob_axis_props["range"][0]
        frames = [(label, df.assign(**{f"{c}_lo": df[f"{c}_lo"].clip(lower=floor)
                                       for c in prob_cols if f"{c}_lo" in df.columns}), dash)
                  for label, df, dash in frames]
    facet_rows, cols = _grid(len(keys), max_cols)
    per = 2 if entropy else 1
    n_rows = facet_rows * per
    fig = make_subplots(rows=n_rows, cols=cols, horizontal_spacing=0.07 if cols > 1 else 0.0,
                        vertical_spacing=0.0)
    # Explicit vertical domains: each facet is a block (probabilities on top, entropy
    # right below, a small gap between them) and blocks are separated by room for the
    # next panel's title and the "layer" axis title.
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
                frame = _facet_frame(frames[0][1], keys[i]) if single else None
                titles.append(dict(text=f"<b>{_facet_title(keys[i], frame)}</b>", x=(xdom[0] + xdom[1]) / 2,
                                   y=min(1.0, top), xref="paper", yref="paper", xanchor="center",
                                   yanchor="bottom", showarrow=False, font=dict(size=14)))
    for t in titles:
        fig.add_annotation(**t)

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
            frame = _facet_frame(df, key)
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
                _add_line(fig, frame, col, f"{col}_lo", f"{col}_hi", name=f"P({legend})", color=_shade(role, m),
                          group=group, showlegend=group not in legend_seen, dash=dash, row=r0, col_idx=c,
                          label=f"P({hover})" + ("" if single else f" · {label}"))
                if _has(frame, col):
                    legend_seen.add(group)
            if entropy:
                group = f"entropy|{label}"
                ok = _add_line(fig, frame, "entropy_bits", *_entropy_ci(frame),
                               name="entropy (bits)" if single else f"entropy · {label}", color=_shade("entropy", m),
                               group=group, showlegend=group not in legend_seen, dash=dash, row=r0 + 1, col_idx=c,
                               label="entropy (bits)" + ("" if single else f" · {label}"), fmt=".2f")
                if ok:
                    legend_seen.add(group)

    # Axes: x ticks and "layer" only on the lowest row of each facet; the entropy row zooms
    # with its probability row along x. y ranges are computed here, never matched across
    # panels: probability axes share one explicit range (0..1, or the log view), entropy axes
    # another that fits every entropy value and CI drawn.
    x_range = _x_range([f for _, f, _ in frames], choices[0][1] if choices else {})
    axes: dict[str, dict] = {}  # one layout update for all axes (per-axis updates are slow)
    common_x = dict(range=x_range, zeroline=False, **_ticks(x_range, cols))

    def axis(rc: tuple[int, int], which: str, **props) -> None:
        sub = fig.get_subplot(*rc)
        name = (sub.xaxis if which == "x" else sub.yaxis).plotly_name
        axes.setdefault(name, dict(common_x) if which == "x" else {}).update(props)

    data = [f for _, f, _ in frames]
    ent_axis_props = dict(range=fit_range(data, ["entropy_bits", *_entropy_ci(data[0])]))
    for (r0, c) in prob_cells:
        axis((r0, c), "y", title=dict(text="probability" + (" (log)" if prob_axis == "log" else "")),
             **prob_axis_props)
        if entropy:
            top = fig.get_subplot(r0, c).xaxis.plotly_name.replace("axis", "")
            axis((r0, c), "x", showticklabels=False)
            axis((r0 + 1, c), "y", title=dict(text="entropy<br>(bits)"), **ent_axis_props)
            axis((r0 + 1, c), "x", title=dict(text="layer"), matches=top)
        else:
            axis((r0, c), "x", title=dict(text="layer"))
    fig.update_layout(**axes)

    model_dash = {label: dash for label, _, dash in frames}
    for label, choice in choices:
        if not choice:
            continue
        # One choice: dashed markers. One per model: each model's markers in its own line style.
        suffix = "" if len(choices) == 1 else f" ({label})"
        dash = "dash" if len(choices) == 1 else model_dash.get(label, "dash")
        _mark_layers(fig, choice, rows_cols=all_cells, annotate=set(prob_cells), dash=dash, suffix=suffix)

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
    df = _filter_lens(lens_df, task, pairs, subset)
    what = "" if subset == "all" else f", items answered {subset}ly" if subset == "correct" else f", {subset}"
    scale = ", log scale" if prob_axis == "log" else ""
    title = title or f"Latent language per layer (logit lens{what}{scale}){_model_title(c)}"
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
    frames = [(str(label), _filter_lens(df, task, pairs, subset), DASHES[i % len(DASHES)])
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


# --------------------------------------------------------------------------- entropy


def _legend_name(i: int) -> str:
    return "legend" if i == 0 else f"legend{i + 1}"


def _panel_legends(fig: go.Figure, cells: Sequence[tuple[tuple[int, int], str]], *, below: bool = True,
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
        props[_legend_name(i)] = dict(title=dict(text=heading), font=dict(size=11), tracegroupgap=2,
                                      bgcolor="rgba(255,255,255,0.8)", **where)
    return props


def entropy_figure(lens_df: pd.DataFrame, choice: Any = None, *, task: str | Sequence[str] | None = None,
                   pairs: Sequence | None = None, title: str | None = None, subset: str = "all") -> go.Figure:
    """Logit-lens entropy (bits) per layer with its 95% CI: one panel per task, one line per
    (input → target) pair in a colour of its own, each panel with its own legend beneath it.
    All panels share one y range fitted to the data. The paper's layer rule reads the first
    and second sharp drop of this curve."""
    c = choice_dict(choice)
    df = _filter_lens(lens_df, task, pairs, subset)
    title = title or f"Logit-lens entropy per layer{_model_title(c)}"
    if not _has(df, "entropy_bits"):
        return _empty(title, "The lens table has no entropy_bits column.")
    keys = facet_keys(df)
    tasks = list(dict.fromkeys(k[0] for k in keys))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks,
                        horizontal_spacing=0.06 if len(tasks) > 1 else 0.0)
    for t, task_name in enumerate(tasks):
        pair_keys = [k for k in keys if k[0] == task_name]
        for i, key in enumerate(pair_keys):
            frame = _facet_frame(df, key)
            name = f"{key[1]} → {key[2]}"
            _add_line(fig, frame, "entropy_bits", *_entropy_ci(frame), name=name,
                      color=line_color(i, len(pair_keys)), group=f"{task_name}|{name}", showlegend=True,
                      label=f"entropy · {_facet_title(key)}", fmt=".2f", row=1, col_idx=t + 1)
        for trace in fig.data:
            if trace.legendgroup and trace.legendgroup.startswith(f"{task_name}|"):
                trace.legend = _legend_name(t)
    x_range = _x_range([df], c)
    fig.update_xaxes(title_text="layer", range=x_range, **_ticks(x_range, len(tasks)))
    fig.update_yaxes(range=fit_range([df], ["entropy_bits", *_entropy_ci(df)]), type="linear")
    fig.update_yaxes(title_text="entropy (bits)", row=1, col=1)
    if c:
        _mark_layers(fig, c, rows_cols=[(1, t + 1) for t in range(len(tasks))])
    n_legend = max(sum(1 for k in keys if k[0] == t) for t in tasks)
    height, margin = 420 + 22 * n_legend, dict(t=90, b=80 + 22 * n_legend)
    plot_px = height - margin["t"] - margin["b"]
    fig.update_layout(title=dict(text=title), template="plotly_white", height=height, margin=margin,
                      **_panel_legends(fig, [((1, t + 1), "input → target") for t in range(len(tasks))],
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
    present = [(col, role, label) for col, role, label in _SHARE_COLS if _has(lens_df, col)]
    if not present:
        return None
    c = choice_dict(choice)
    df = _filter_lens(lens_df, task, pairs, subset)
    title = title or f"Top-k logit-lens tokens by language per layer (MWork view){_model_title(c)}"
    keys = facet_keys(df)
    if not keys:
        return _empty(title, "No lens rows to plot (check the task / pairs filter).")
    rows, cols = _grid(len(keys), max_cols)
    fig = make_subplots(rows=rows, cols=cols,
                        subplot_titles=[_facet_title(k, _facet_frame(df, k)) for k in keys],
                        vertical_spacing=min(0.12, 0.9 / max(1, rows - 1)) if rows > 1 else 0.0,
                        horizontal_spacing=0.06 if cols > 1 else 0.0)
    cells = []
    for i, key in enumerate(keys):
        r, cc = i // cols + 1, i % cols + 1
        cells.append((r, cc))
        frame = _facet_frame(df, key)
        custom, extra = _hover_data(frame, None, None)
        for col, role, label in present:
            name = f"{label} ({key[2]})" if role == "target" and len(keys) == 1 else label
            fig.add_trace(go.Scatter(
                x=_num(frame["layer"]), y=_num(frame[col]), name=name, legendgroup=role, showlegend=i == 0,
                mode="lines", stackgroup="shares", line=dict(color=COLORS[role], width=0.5),
                fillcolor=_rgba(COLORS[role], 0.6), customdata=custom,
                hovertemplate=f"<b>{label}</b><br>layer %{{x}}<br>share %{{y:.2f}}"
                              + (f"<br>{extra}" if extra else "") + "<extra></extra>",
            ), row=r, col=cc)
        fig.update_yaxes(title_text="share of top-k tokens", range=[0, 1.0], row=r, col=cc)
        fig.update_xaxes(title_text="layer", row=r, col=cc)
    fig.update_xaxes(range=_x_range([df], c), **_ticks(_x_range([df], c), cols))
    if c:
        _mark_layers(fig, c, rows_cols=cells)
    fig.update_layout(title=dict(text=title), template="plotly_white", height=max(360, 330 * rows),
                      margin=dict(t=90))
    return fig


# --------------------------------------------------------------------------- linear probes


def _is_retrieval(name: str) -> bool:
    return str(name).lower().startswith("retriev")


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
    """
    c = choice_dict(choice)
    title = title or f"Linear probes per layer{_model_title(c)}"
    if probes_df is None or len(probes_df) == 0:
        return _empty(title, "No probe results.")
    missing = [col for col in ("layer", "probe", "value") if col not in probes_df.columns]
    if missing:
        raise ValueError(f"probe table lacks column(s) {', '.join(missing)}; is it the probe's probes.csv?")
    df = probes_df.copy()
    if "metric" not in df.columns:
        df["metric"] = "accuracy"
    df["metric"] = df["metric"].astype(object).where(df["metric"].notna(), "value").astype(str)
    retr = df[df["probe"].astype(str).map(_is_retrieval)]
    ident = df[~df["probe"].astype(str).map(_is_retrieval)]

    panels = []
    if len(ident):
        panels.append(("ident", "Language identity: probe accuracy vs control task"))
        if _has(ident, "selectivity"):
            panels.append(("sel", "Selectivity (probe accuracy − control accuracy)"))
    if len(retr):
        panels.append(("retr", "Cross-lingual alignment: translation retrieval accuracy"))
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=[t for _, t in panels],
                        vertical_spacing=0.1 if len(panels) > 1 else 0.0, shared_xaxes=False)
    row_of = {name: i + 1 for i, (name, _) in enumerate(panels)}

    def series_names(frame: pd.DataFrame) -> list[tuple[tuple, str]]:
        groups = list(frame.groupby(["probe", "metric"], sort=False, dropna=False).groups)
        multi_metric = frame.groupby("probe")["metric"].nunique().max() > 1 if len(frame) else False
        return [((p, m), f"{p} ({m})" if multi_metric else str(p)) for p, m in groups]

    if "ident" in row_of:
        baseline_done = False
        for i, ((probe, metric), name) in enumerate(series_names(ident)):
            frame = ident[(ident["probe"] == probe) & (ident["metric"] == metric)].sort_values("layer")
            color = line_color(i, len(series_names(ident)))
            _add_line(fig, frame, "value", "ci_low", "ci_high", name=name, color=color, group=name,
                      showlegend=True, row=row_of["ident"], col_idx=1, label=f"{name}: {metric}")
            if _has(frame, "control"):
                _add_line(fig, frame, "control", None, None, name=f"{name} control", color=color, group=name,
                          showlegend=False, dash="dash", row=row_of["ident"], col_idx=1,
                          label=f"{name}: control task", band=False)
            if _has(frame, "baseline") and not baseline_done:
                _add_line(fig, frame, "baseline", None, None, name="majority baseline", color=COLORS["other"],
                          group="baseline", showlegend=True, dash="dot", row=row_of["ident"], col_idx=1,
                          label="majority baseline", band=False)
                baseline_done = True
            if "sel" in row_of and _has(frame, "selectivity"):
                _add_line(fig, frame, "selectivity", "selectivity_ci_low", "selectivity_ci_high",
                          name=f"{name} selectivity", color=color, group=name, showlegend=False,
                          row=row_of["sel"], col_idx=1, label=f"{name}: selectivity")
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=row_of["ident"], col=1)
        if "sel" in row_of:
            fig.update_yaxes(title_text="selectivity", row=row_of["sel"], col=1)
    if "retr" in row_of:
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
            _add_line(fig, frame, "value", "ci_low", "ci_high", name=name, color=line_color(i, len(groups)),
                      group=f"retr|{name}", showlegend=True, row=row_of["retr"], col_idx=1,
                      label=f"{name}: {metric}")
            if i == 0 and _has(frame, "baseline"):
                _add_line(fig, frame, "baseline", None, None, name="retrieval chance", color=COLORS["other"],
                          group="retr|chance", showlegend=True, dash="dot", row=row_of["retr"], col_idx=1,
                          label="retrieval chance", band=False)
        accuracy_like = "acc" in metric
        fig.update_yaxes(title_text=f"retrieval {metric}", row=row_of["retr"], col=1,
                         **(dict(range=[0, 1.02]) if accuracy_like else {}))
        panels[-1] = ("retr", f"Cross-lingual alignment: translation retrieval ({metric})")
        fig.layout.annotations[len(panels) - 1].text = panels[-1][1]
    x_range = _x_range([df], c)
    fig.update_xaxes(title_text="layer", range=x_range, **_ticks(x_range))
    if c:
        _mark_layers(fig, c, rows_cols=[(r, 1) for r in row_of.values()])
    # Each panel lists its own lines in a legend right of it (no long scrolling list).
    legend_rows = sorted({int((t.yaxis or "y")[1:] or 1) for t in fig.data if t.showlegend is not False})
    for t in fig.data:
        row = int((t.yaxis or "y")[1:] or 1)
        if row in legend_rows:
            t.legend = _legend_name(legend_rows.index(row))
    headings = {row_of.get("ident"): "language identity", row_of.get("retr"): "retrieval"}
    fig.update_layout(title=dict(text=title), template="plotly_white", height=max(380, 320 * len(panels)),
                      hovermode="closest", margin=dict(t=90, r=190),
                      **_panel_legends(fig, [((r, 1), headings.get(r, "")) for r in legend_rows], below=False))
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
    title = title or f"Per-item logit lens ({task}){_model_title(c)}"
    needed = {"task", "input_lang", "target_lang", "item_id", "layer", *columns}
    missing = sorted(needed - set(lens_items.columns))
    if missing:
        raise ValueError(f"per-item table lacks column(s) {', '.join(missing)}; pass lens_items.csv.")
    df = lens_items[lens_items["task"].astype(str) == task]
    if pairs is not None:
        keys = {_pair_key(p) for p in pairs}
        df = df[[(a, b) in keys for a, b in zip(df["input_lang"].astype(str), df["target_lang"].astype(str))]]
    pair_keys = list(dict.fromkeys(zip(df["input_lang"].astype(str), df["target_lang"].astype(str))))
    if not pair_keys:
        return _empty(title, f"No per-item rows for task {task!r}.")
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
            fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=9), row=r, col=k)
            fig.update_xaxes(title_text="layer", row=r, col=k)
    if c:
        _mark_layers(fig, c, rows_cols=[(r, k) for r in range(1, len(pair_keys) + 1)
                                        for k in range(1, len(columns) + 1)])
    fig.update_layout(title=dict(text=title), template="plotly_white",
                      height=len(pair_keys) * (n_max * 14 + 110) + 80, margin=dict(t=90))
    return fig
