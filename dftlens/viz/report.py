"""``report.html``: one self-contained page with the probe's figures and its layer choice.

The page embeds plotly.js once, inline (with the first figure), so it opens offline
and can be mailed around as a single file. It is written atomically.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import __version__
from ..io import write_text
from .overlap_section import overlap_section
from .figures import (
    choice_dict,
    entropy_figure,
    item_heatmap_figure,
    latent_language_figure,
    probe_figure,
    token_share_figure,
)

__all__ = ["write_report", "render_report", "report_figures", "evidence_rows"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
p.meta { color: #666; margin-top: 0; }
p.note { color: #444; max-width: 60rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figure { margin: 1rem 0 2rem 0; }
div.warn { background: #fff4e5; border: 1px solid #f0b060; padding: .4rem .8rem; margin: .6rem 0; max-width: 60rem; }
"""

_NOTES = {
    "latent": (
        "Logit lens at the last prompt position: the probability of the answer's English "
        "tokens (blue) and target-language tokens (red), and the input language (green) where "
        "it differs, with 95% confidence intervals over items. The row below each panel is the "
        "entropy of the lens distribution in bits."
    ),
    "latent_correct": (
        "The same curves over the items the model answers correctly: its top-1 logit-lens token at "
        "the last layer is in the target word's token set (n per panel in its title). Averages over "
        "all items mix in prompts the model never solves. The entropy band is a percentile bootstrap "
        "over items (never below 0 bits); a panel of fewer than 5 items has no entropy band, as so few "
        "items give no usable interval."
    ),
    "latent_log": (
        "The latent-language curves (all items) on a log scale, so that small probability masses "
        "and their ordering stay visible; a mean of exactly 0 is not drawn (a gap in its line) and "
        "smaller positive masses sit on the lower edge (the axis title gives it)."
    ),
    "items": (
        "Per item (rows, strongest English peak first; ✓ = answered correctly) and layer: P(English) "
        "and P(target) for the translation prompts. Averaged curves hide the items where the pivot "
        "is strong."
    ),
    "entropy": "Logit-lens entropy per layer; the paper's rule reads its first and second sharp drop.",
    "evidence": (
        "Each kind of evidence with the layer it points to (diamond) and its interval (bar; 2.5-97.5 percentiles "
        "of 200 item resamples where it can be resampled): the logit lens's English onset, the probes' "
        "retrieval jump, the first and second sharp entropy drop (Huo et al.) and, with --causal, the "
        "patching window. Dashed lines: the chosen LC and ET."
    ),
    "support": (
        "How often each layer was chosen when the items of each pair are resampled with replacement and the "
        "deciding rule is applied again. A chosen layer under the dotted line is provisional."
    ),
    "patching": (
        "Dumas et al.'s concept patching: the source prompt's last-token latent (concept A, language Y) "
        "overwrites the target prompt's (B, Y') at one layer. Where P(B in Y) rises the output language has "
        "switched; where P(A in Y') or P(A in Y) rises the concept has moved."
    ),
    "share": (
        "MWork view: the share of the top-k logit-lens tokens per layer that are English, "
        "target-language, input-language, or other. One rule for every panel: a token in the item's "
        "answer sets takes that set's language; any other token is classified by its text (letters only, "
        "its script, then wordfreq's word frequencies: at least once per million words in the language "
        "and ten times as frequent as in the item's other languages of that script); markup, "
        "punctuation, fragments and ambiguous words are 'other'."
    ),
    "probes": (
        "Linear probes on mean-pooled sentence residuals: language identity (with a control task "
        "and the majority baseline) and retrieval of each sentence's translation by cosine similarity."
    ),
}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _flatten(evidence: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(evidence, Mapping):
        return [] if evidence is None else [(prefix or "evidence", evidence)]
    items: list[tuple[str, Any]] = []
    for key, value in evidence.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, name))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            items.extend((f"{name}[{i}]", v) for i, v in enumerate(value))  # e.g. prompt counts
        else:
            items.append((name, value))
    return items


def evidence_rows(evidence: Any) -> list[tuple[str, str]]:
    """The evidence (a :class:`dftlens.layer_evidence.Evidence`, or its dict as in ``layers.json``)
    as (dotted key, formatted value) rows: what decided first (``*decided_by*``), then single
    values, then per-layer curves and records. None gives no rows."""
    if hasattr(evidence, "to_dict"):
        evidence = evidence.to_dict()
    def rank(item: tuple[str, Any]) -> int:
        key, value = item
        if "decided_by" in key:
            return 0
        return 2 if isinstance(value, (list, tuple, np.ndarray, Mapping)) else 1

    items = sorted(_flatten(evidence), key=rank)  # stable: the probe's order within each rank
    return [(key, _fmt(value)) for key, value in items]


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (f"<table><thead><tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>"
            f"</thead><tbody>{body}</tbody></table>")


def _choice_section(choice: dict) -> str:
    if not choice:
        return "<p class='note'>No layer choice was given.</p>"
    main = []
    for key, label in (("model", "model"), ("n_layers", "layers"),
                       ("lc_layer", "LC layer (end of language conversion)"),
                       ("et_layer", "ET layer (end of English thinking)")):
        if key in choice and choice[key] is not None:
            main.append((label, _fmt(choice[key])))
    hooks = choice.get("hooks")
    if isinstance(hooks, Mapping):
        main.extend((f"hook ({k})", _fmt(v)) for k, v in hooks.items())
    if choice.get("languages"):
        main.append(("languages", _fmt(choice["languages"])))
    evidence = choice.get("evidence") or {}
    if isinstance(evidence, Mapping):
        if evidence.get("rule"):
            main.append(("deciding rule", _fmt(evidence["rule"])))
        for kind in ("lc", "et"):
            by = evidence.get(f"{kind}_decided_by")
            if by is not None:
                main.append((f"{kind.upper()} decided by", _fmt(by)))
            support = (evidence.get("support") or {}).get(kind)
            if support:
                share = float(support["shares"].get(str(support["layer"]), 0.0))
                main.append((f"{kind.upper()} bootstrap support", f"layer {support['layer']} in {share:.0%} of "
                             f"{support['n_resamples']} resamples; interval {support['interval'][0]}-"
                             f"{support['interval'][1]}"))
    out = ["<h2>Layer choice</h2>", _provisional_note(evidence), _table(main, ("", "value")),
           _kinds_section(choice)]
    shown = {k: v for k, v in evidence.items() if k not in ("readings", "support", "provisional")} \
        if isinstance(evidence, Mapping) else evidence
    ev = evidence_rows(shown)
    if ev:
        # Every number the rule used (parameters, curves, counts): folded, so the figures come first.
        out += [f"<details><summary><strong>What the rule read</strong> ({len(ev)} rows: parameters, curves, "
                f"prompt counts, overlap sensitivity)</summary>", _table(ev, ("signal", "value")), "</details>"]
    return "\n".join(out)


def _provisional_note(evidence: Any) -> str:
    reasons = evidence.get("provisional") if isinstance(evidence, Mapping) else None
    if not reasons:
        return ""
    items = "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons)
    return (f"<div class='warn'><strong>Provisional choice.</strong> Check the figures below or set "
            f"--lc-layer/--et-layer before training on it:<ul>{items}</ul></div>")


def _kinds_section(choice: Mapping) -> str:
    from ..analysis.evidence_kinds import disagreements
    from ..layer_evidence import Reading
    from .evidence_figures import reading_rows

    rows = reading_rows(choice)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(r['evidence'])}</td><td>{html.escape(r['signal'])}</td>"
        f"<td class='num'>{_fmt(r['layer']) or '–'}</td><td>{_fmt(r['interval']) or '–'}</td>"
        f"<td>{html.escape(r['note'])}</td></tr>" for r in rows)
    table = ("<table><thead><tr><th>evidence</th><th>points to</th><th>layer</th><th>interval</th><th>note</th>"
             f"</tr></thead><tbody>{body}</tbody></table>")
    readings = tuple(Reading.from_dict(r, "layers.json") for r in choice["evidence"]["readings"])
    said = disagreements(readings, choice.get("lc_layer"), choice.get("et_layer"))
    verdict = ("<p class='note'><strong>The kinds of evidence disagree:</strong> " + " ".join(map(html.escape, said))
               + "</p>") if said else "<p class='note'>Every kind of evidence with an answer agrees with the choice " \
        "(its layer or interval holds the chosen layer).</p>"
    return "<h3>Layer evidence side by side</h3>" + verdict + table


def _summary_section(summary_df: pd.DataFrame | None) -> str:
    if summary_df is None or len(summary_df) == 0:
        return ""
    table = summary_df.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.3g}",
                               na_rep="–", classes="summary")
    return "<h2>Summary</h2>\n" + table


def _counts_section(counts_df: pd.DataFrame | None) -> str:
    if counts_df is None or len(counts_df) == 0:
        return ""
    table = counts_df.to_html(index=False, escape=True, border=0, na_rep="–", classes="summary")
    return ("<h2>Prompts per task and pair</h2>\n<p class='note'><code>overlap_&lt;kind&gt;</code>: items "
            "whose answer token sets (English, target, input word) share a token that way (an item can "
            "count twice); <code>dropped</code>: items the overlap policy dropped, each once; "
            "<code>removed_&lt;set&gt;</code>: shared token ids the policy took out of the kept items' "
            "sets.</p>\n" + table)


def report_figures(lens_df: pd.DataFrame | None, probes_df: pd.DataFrame | None, choice: Any = None,
                   lens_items: pd.DataFrame | None = None, patching: pd.DataFrame | None = None
                   ) -> list[tuple[str, str, go.Figure]]:
    """The report's figures as (key, heading, figure), in page order; ``key`` is also the file
    name stem when figures are exported (see :func:`dftlens.viz.export.save_figures`).
    ``patching``: the concept-patching table of ``probe --causal`` (its figure is added)."""
    from .evidence_figures import layer_evidence_figure, support_figure

    choice = choice_dict(choice)
    figs: list[tuple[str, str, go.Figure]] = []
    for key, heading, make in (("evidence", "Layer evidence", layer_evidence_figure),
                               ("support", "Bootstrap support of the choice", support_figure)):
        fig = make(choice)
        if fig is not None:
            figs.append((key, heading, fig))
    if patching is not None and len(patching):
        from .patch_figures import patching_figure

        figs.append(("patching", "Activation patching (probe --causal)", patching_figure(patching, "concept")))
    if lens_df is not None and len(lens_df):
        figs.append(("latent", "Latent language per layer", latent_language_figure(lens_df, choice=choice)))
        if "subset" in lens_df.columns and (lens_df["subset"] == "correct").any():
            figs.append(("latent_correct", "Latent language per layer, items answered correctly",
                         latent_language_figure(lens_df, choice=choice, subset="correct")))
        figs.append(("latent_log", "Latent language per layer, log scale",
                     latent_language_figure(lens_df, choice=choice, prob_axis="log", entropy=False)))
    if lens_items is not None and len(lens_items) and (lens_items["task"] == "translation").any():
        figs.append(("items", "Per-item view (translation)", item_heatmap_figure(lens_items, choice=choice)))
    if lens_df is not None and len(lens_df):
        figs.append(("entropy", "Entropy", entropy_figure(lens_df, choice=choice)))
        share = token_share_figure(lens_df, choice=choice)
        if share is not None:
            figs.append(("share", "Token language shares", share))
    if probes_df is not None and len(probes_df):
        figs.append(("probes", "Linear probes", probe_figure(probes_df, choice=choice)))
    return figs


def render_report(lens_df: pd.DataFrame | None, probes_df: pd.DataFrame | None, choice: Any = None, *,
                  title: str = "dftlens probe report", summary_df: pd.DataFrame | None = None,
                  figures: list[tuple[str, go.Figure]] | None = None, lens_items: pd.DataFrame | None = None,
                  counts_df: pd.DataFrame | None = None, patching: pd.DataFrame | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`). ``figures`` appends extra
    (heading, figure) pairs after the standard ones; ``lens_items`` (per-item rows) adds the
    per-item heatmap; ``counts_df`` (prompts built / dropped per overlap kind / used, per task
    and pair) a table."""
    c = choice_dict(choice)
    figs = report_figures(lens_df, probes_df, c, lens_items, patching)
    figs += [(f"extra{i}", heading, fig) for i, (heading, fig) in enumerate(figures or [])]
    parts = []
    for i, (key, heading, fig) in enumerate(figs):
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig-{key}",
                          config={"responsive": True, "displaylogo": False})
        note = f"<p class='note'>{html.escape(_NOTES[key])}</p>" if key in _NOTES else ""
        parts.append(f"<section class='figure'><h2>{html.escape(heading)}</h2>{note}\n{div}</section>")
    if not figs:
        parts.append("<p class='note'>No lens or probe results to plot.</p>")
    meta = f"dftlens {html.escape(__version__)}"
    if c.get("model"):
        meta = f"model {html.escape(str(c['model']))} · " + meta
    return "\n".join([
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>{meta}</p>",
        _choice_section(c),
        _summary_section(summary_df),
        _counts_section(counts_df),
        overlap_section(c.get("evidence")),
        *parts,
        "</body></html>",
        "",
    ])


def write_report(path: Path | str, lens_df: pd.DataFrame | None, probes_df: pd.DataFrame | None, choice: Any = None,
                 *, title: str = "dftlens probe report", summary_df: pd.DataFrame | None = None,
                 figures: list[tuple[str, go.Figure]] | None = None, lens_items: pd.DataFrame | None = None,
                 counts_df: pd.DataFrame | None = None, patching: pd.DataFrame | None = None) -> Path:
    """Write one self-contained HTML report to ``path`` (atomically) and return the path.

    Contents: a heading, the layer choice (LC, ET, hooks) with its evidence as a table, an
    optional summary table, then the latent-language, entropy, token-share (when the lens
    table has ``share_*`` columns) and probe figures, each with the chosen layers marked.
    plotly.js is embedded inline exactly once, so the file opens without a network.
    """
    path = Path(path)
    write_text(path, render_report(lens_df, probes_df, choice, title=title, summary_df=summary_df, figures=figures,
                                   lens_items=lens_items, counts_df=counts_df, patching=patching))
    return path
