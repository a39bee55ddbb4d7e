"""Colours and line styles shared by the probe, compare and patch figures (one palette)."""

from __future__ import annotations

# Colours by language role, so every figure reads the same way.
COLORS = {
    "en": "#1f77b4",  # English: blue
    "target": "#d62728",  # target language: red
    "input": "#2ca02c",  # input language: green
    "other": "#9a9a9a",  # everything else: grey
    "entropy": "#555555",
}
# In comparison figures each model gets its own shade of the role's colour (and its own line
# style), so no two lines in a panel share a colour: base, light, dark, lighter. The dark shade
# keeps its hue (Brewer's 8th step, not the near-black 9th): a third model's dotted lines must
# still read as English / target / input.
SHADES = {
    "en": ("#1f77b4", "#6baed6", "#08519c", "#9ecae1"),
    "target": ("#d62728", "#fc9272", "#a50f15", "#fcbba1"),
    "input": ("#2ca02c", "#74c476", "#006d2c", "#a1d99b"),
    "entropy": ("#555555", "#999999", "#252525", "#bbbbbb"),
}


def shade(role: str, model_index: int) -> str:
    """The colour of ``role``'s line for the ``model_index``-th model of a comparison figure.

    Cycles through ``SHADES[role]``; a role without shades gets its :data:`COLORS` colour
    (``"#555555"`` for an unknown role).
    """
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
# The columns that name one facet (panel) of the probe figures.
FACET_COLS = ("task", "input_lang", "target_lang")

# (colour role, probability column, legend label) of the latent-language lines (Wendler et al. 2024, Fig. 3).
LATENT_ROLES = (("en", "p_en", "English"), ("target", "p_target", "target"), ("input", "p_input", "input"))


def rgba(hex_color: str, alpha: float) -> str:
    """``"#rrggbb"`` and an opacity in [0, 1] -> plotly's ``"rgba(r,g,b,alpha)"`` string (CI band fills)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
