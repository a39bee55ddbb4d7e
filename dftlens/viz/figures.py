"""Plotly figures for the probe's outputs (this module gathers them; each kind has its own module).

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

from .figure_style import (
    COLORS, DASHES, LONG_PALETTE, MARKER_COLORS, PALETTE, ROLE_LABELS, SHADES, line_color,
)
from .figure_axes import fit_range, probability_axis
from .figure_data import choice_dict, facet_keys
from .latent_figures import compare_latent_figure, latent_language_figure
from .lens_figures import entropy_figure, item_heatmap_figure, token_share_figure
from .probe_figures import probe_figure

__all__ = [
    "COLORS", "DASHES", "LONG_PALETTE", "MARKER_COLORS", "PALETTE", "ROLE_LABELS", "SHADES", "line_color",
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
