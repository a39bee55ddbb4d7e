"""Saving figures as PNG, SVG and PDF (for papers), offline.

plotly's own exporter, kaleido (>= 1.0), renders figures in a headless Chrome or
Chromium that is already on the machine: it uses the plotly.js bundled with the
plotly package, so nothing is downloaded. dftlens points kaleido at the system
browser when ``BROWSER_PATH`` is not set (``chromium``, ``chromium-browser``,
``google-chrome`` on ``PATH``; Debian: ``apt-get install chromium``).

    from dftlens.viz.export import save_figure, save_figures
    save_figure(fig, "figs/latent", ["png", "svg", "pdf"])   # figs/latent.png, .svg, .pdf
    save_figures({"latent": fig, "entropy": fig2}, "figs", ["png"])

All files of one call are rendered in a single browser session (starting it costs a
few seconds); files are rendered into a temporary folder and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import plotly.graph_objects as go

from ..errors import DftlensError

__all__ = ["FORMATS", "parse_formats", "save_figure", "save_figures"]

FORMATS = ("png", "svg", "pdf")
WIDTH = 1200  # px, for figures that set no width (plotly's default of 700 squeezes the facets)
PNG_SCALE = 2  # PNGs at twice the pixel size: sharp when printed


class ExportError(DftlensError):
    """A figure could not be exported (bad format, no browser for kaleido)."""


def parse_formats(text: str | Iterable[str] | None) -> list[str]:
    """``"png,svg"`` or ``["png", "svg"]`` -> ``["png", "svg"]``; refuses unknown formats."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else list(text)
    formats = list(dict.fromkeys(p.strip().lower().lstrip(".") for p in parts if p and p.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"Unknown figure format {', '.join(bad)}; use {', '.join(FORMATS)} (comma-separated).")
    return formats


def _browser() -> None:
    """Point kaleido at the system's Chromium/Chrome unless BROWSER_PATH already says where."""
    if os.environ.get("BROWSER_PATH"):
        return
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            os.environ["BROWSER_PATH"] = found
            return


def save_figures(figures: Mapping[str, go.Figure], out_dir: str | Path, formats: Sequence[str] | str,
                 *, width: int | None = None) -> list[Path]:
    """Write each figure as ``out_dir/<name>.<format>`` for every format; returns the paths.

    ``formats``: any of ``png``, ``svg``, ``pdf`` (list or comma-separated string). Figures
    without a layout width are rendered ``width`` (default 1200) px wide at their own height;
    PNGs at scale 2. Raises :class:`ExportError` (one sentence) when kaleido or a browser is
    missing."""
    formats = parse_formats(formats)
    if not formats or not figures:
        return []
    try:
        import kaleido  # noqa: F401  (plotly's exporter; imported here to fail with a clear message)
        import plotly.io as pio
    except ImportError:
        raise ExportError("Saving figures needs kaleido: pip install 'kaleido>=1.0'.") from None
    _browser()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for name, fig in figures.items():
        w = fig.layout.width or width or WIDTH
        h = fig.layout.height or 500
        for fmt in formats:
            paths.append(out_dir / f"{name}.{fmt}")
            jobs.append((fig, fmt, w, h))
    # Render into a hidden temporary folder, then rename each file into place: a failed
    # export leaves no torn or partial set of files.
    tmp_dir = Path(tempfile.mkdtemp(prefix=".figures.", dir=out_dir))
    try:
        tmps = [tmp_dir / p.name for p in paths]
        try:
            pio.write_images([j[0] for j in jobs], [str(t) for t in tmps], format=[j[1] for j in jobs],
                             width=[j[2] for j in jobs], height=[j[3] for j in jobs],
                             scale=[PNG_SCALE if j[1] == "png" else 1 for j in jobs])
        except Exception as exc:  # kaleido's errors for a missing browser are long and varied
            if "chrome" in str(exc).lower() or "browser" in str(exc).lower():
                raise ExportError("Saving figures needs Chrome or Chromium (Debian: apt-get install chromium; "
                                  "or set BROWSER_PATH to the browser's executable).") from None
            raise
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return paths


def save_figure(fig: go.Figure, path: str | Path, formats: Sequence[str] | str | None = None,
                *, width: int | None = None) -> list[Path]:
    """Write one figure. ``path`` with a suffix (``fig.svg``) and no ``formats`` writes that
    format; otherwise ``path`` is the stem and one file per format is written."""
    path = Path(path)
    if formats is None:
        if path.suffix.lstrip(".").lower() not in FORMATS:
            raise ExportError(f"Give formats or a file name ending in {', '.join('.' + f for f in FORMATS)}.")
        formats, path = [path.suffix.lstrip(".").lower()], path.with_suffix("")
    return save_figures({path.name: fig}, path.parent, formats, width=width)
