"""The report's "token sets" section: the overlap policy, what it removed, and the
sensitivity line (peak P(en) per pair under each policy, from the same forward pass)."""

from __future__ import annotations

import html
from typing import Any, Mapping

import pandas as pd

__all__ = ["overlap_section", "sensitivity_table"]

_NOTE = (
    "Token sets are Wendler et al.'s prefix sets. Overlap policy <b>{policy}</b>: {meaning} "
    "Byte-fallback tokens (<code>&lt;0xE7&gt;</code>) enter a set only when the word's first character "
    "has no token of its own and never count as an overlap. The sensitivity line below gives, per pair, "
    "the peak over layers of the mean P(en) under each policy, computed from this run's forward pass "
    "with each policy's token sets, over the measured items that policy keeps (n)."
)
_MEANING = {
    "exclusive": "every item is kept and a token two of its sets share (English, target, input word) "
                 "is removed from all of them, so its mass counts for no language.",
    "drop": "an item is dropped when any two of its sets share a token.",
    "keep": "Wendler et al.'s rule: an item is dropped only when its English and target sets share a "
            "token (or the English word is part of the target word); the sets stay whole.",
}


def sensitivity_table(records: list[Mapping[str, Any]], choices: list[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per task and pair, one column per policy: ``"0.054 @L12 (n=57)"`` (peak mean
    P(en), its layer, items); with ``choices`` a last row with the rule's LC/ET per policy."""
    frame = pd.DataFrame(list(records))
    if frame.empty:
        return frame
    frame["cell"] = [
        "–" if pd.isna(p) else f"{p:.3f} @L{int(layer)} (n={n})"
        for p, layer, n in zip(frame["peak_p_en"], frame["peak_layer"], frame["n_items"])
    ]
    frame["pair"] = frame["task"] + " " + frame["input_lang"] + "->" + frame["target_lang"]
    table = frame.pivot(index="pair", columns="policy", values="cell")
    table = table[[p for p in frame["policy"].drop_duplicates()]].reset_index()
    if choices:
        row = {"pair": "layer rule LC / ET"}
        row.update({c["policy"]: "–" if c.get("lc") is None else f"{c['lc']} / {c['et']}" for c in choices})
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table


def overlap_section(evidence: Mapping[str, Any] | None) -> str:
    """HTML for the report from ``layers.json``'s ``evidence["overlap"]``; empty when absent."""
    overlap = (evidence or {}).get("overlap") if isinstance(evidence, Mapping) else None
    if not overlap:
        return ""
    policy = str(overlap.get("policy", ""))
    note = _NOTE.format(policy=html.escape(policy), meaning=_MEANING.get(policy, ""))
    table = sensitivity_table(overlap.get("sensitivity") or [], overlap.get("choices"))
    body = table.to_html(index=False, escape=True, border=0, classes="summary") if len(table) else ""
    return f"<h2>Token sets and overlap sensitivity</h2>\n<p class='note'>{note}</p>\n{body}"
