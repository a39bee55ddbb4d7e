"""Writing and printing ``dftlens eval`` results: results.csv, report.html, eval.json, a table."""

from __future__ import annotations

import math
import platform
from pathlib import Path
from typing import Callable

from ..io import write_csv, write_json, write_text
from ..output_dirs import results_dir
from .skips import summarize_skips
from .runner import EvalRun, differences

FIGURES = "figures"  # --figure-format: figures/<key>.<format>
OUTPUTS = ("results.csv", "report.html", "eval.json", FIGURES)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("dftlens", "lm_eval", "torch", "transformers", "datasets"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except Exception:  # pragma: no cover
            out[name] = "not installed"
    return out


def write_outputs(run: EvalRun, out: str | Path, overwrite: bool = False,
                  extra: Callable[[Path], object] | None = None,
                  figure_formats: list[str] | str | None = None) -> dict[str, Path]:
    """results.csv (tidy), report.html (table + figures) and eval.json (settings, skips, timings).

    ``extra(tmp_dir)`` may add ``run_config.yaml`` before the directory swaps in. With
    ``figure_formats`` (``"png,svg"``, any of png/svg/pdf) each figure of report.html is also
    written as ``out/figures/<key>.<format>`` (keys from
    :func:`dftlens.viz.eval_figures.report_figures`; needs kaleido and Chromium). Raises
    :class:`dftlens.viz.export.ExportError` for an unknown format, before anything is written.
    Returns the path of each file (``figures``: the folder, present only with formats).
    """
    from ..viz.eval_figures import report_figures, report_html
    from ..viz.export import parse_formats

    formats = parse_formats(figure_formats)  # refuse a bad format before writing anything
    paths = {name: Path(out).expanduser() / name for name in OUTPUTS if name != FIGURES}
    with results_dir(out, OUTPUTS, overwrite, extra=extra) as tmp:  # every file at once, or none
        at = {name: tmp / name for name in OUTPUTS}
        skipped = summarize_skips(run.skipped)
        write_csv(at["results.csv"], run.frame)
        wide = differences(run.frame, run.models)
        settings = {**run.settings, "models": ", ".join(run.models), "runtime": f"{run.seconds:.0f} s"}
        write_text(at["report.html"], report_html(run.frame, wide, run.models, skipped=skipped, notes=run.notes,
                                                     settings=settings))
        write_json(at["eval.json"], {
            "models": run.models, "settings": run.settings, "seconds": round(run.seconds, 1),
            "model_seconds": {k: round(v, 1) for k, v in run.model_seconds.items()},
            "skipped": [s.__dict__ for s in run.skipped], "skipped_summary": skipped, "notes": run.notes,
            "versions": _versions(),
        })
        if formats:
            from ..viz.export import save_figures

            figures = {key: fig for key, _, fig in report_figures(run.frame, run.models)}
            save_figures(figures, tmp / FIGURES, formats)
            paths[FIGURES] = Path(out).expanduser() / FIGURES
    return paths


def _fmt(value, stderr=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{100 * value:.1f}"
    if stderr is not None and not (isinstance(stderr, float) and math.isnan(stderr)):
        text += f" ±{100 * stderr:.1f}"
    return text


def results_table(run: EvalRun):
    """A rich Table: scores in % ± s.e. per model, and Δ (points) to the first model."""
    from rich.table import Table

    table = Table(title="dftlens eval (zero-shot; % ± standard error)", title_justify="left")
    for col in ("task", "lang", "metric"):
        table.add_column(col)
    for m in run.models:
        table.add_column(m, justify="right")
    for m in run.models[1:]:
        table.add_column(f"Δ {m}", justify="right")
    for cells in _cells(run):
        table.add_row(*cells)
    return table


def _cells(run: EvalRun) -> list[list[str]]:
    """One row of text per (task, language, metric): values ± stderr, then differences to the first model."""
    rows = []
    for _, r in differences(run.frame, run.models).iterrows():
        row = [str(r["task"]), str(r["language"]), str(r["metric"])]
        row += [_fmt(r.get(m), r.get(f"{m} stderr")) for m in run.models]
        for m in run.models[1:]:
            d, se = r.get(f"Δ {m}"), r.get(f"Δ {m} stderr")
            text = "–" if d is None or math.isnan(d) else f"{100 * d:+.1f}"
            row.append(text + (f" ±{100 * se:.1f}" if text != "–" and se is not None and not math.isnan(se) else ""))
        rows.append(row)
    return rows


def plain_table(run: EvalRun) -> str:
    """The same table as fixed-width text (for logs and READMEs)."""
    header = ["task", "lang", "metric", *run.models, *(f"Δ {m}" for m in run.models[1:])]
    rows = _cells(run)
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), *(line(r) for r in rows)])
