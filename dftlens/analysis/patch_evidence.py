"""What activation patching says about the layers: per-layer means with CIs and the causal reading.

:func:`summarise_patching` turns the per-pair rows into per-layer means with 95%
CIs; :func:`causal_evidence` reads the paper's shape off them (where the concept
transfers, where the output language is fixed) and :func:`causal_check` compares it
with a probe's LC/ET layers (``layers.json`` ``evidence["causal"]``).
"""

from __future__ import annotations

import pandas as pd

from .stats import summarise

CONCEPT_COLUMNS = ["p_src_concept", "p_src_concept_src_lang", "p_tgt_concept", "p_tgt_concept_src_lang"]
MEAN_COLUMNS = ["acc_patched", "acc_unpatched", "p_src_concept", "p_tgt_concept"]

def summarise_patching(items: pd.DataFrame) -> pd.DataFrame:
    """patching.csv: per experiment, source, target and layer: means, 95% CIs (_lo/_hi), n_pairs."""
    columns = [c for c in dict.fromkeys(CONCEPT_COLUMNS + MEAN_COLUMNS) if c in items]
    bounds = {c: (0.0, 1.0) for c in columns}
    table = summarise(items, ["experiment", "source", "target", "layer"], columns, bounds=bounds)
    return table.rename(columns={"n_items": "n_pairs"})


def _first(mask: pd.Series) -> int | None:
    hit = mask[mask]
    return int(hit.index[0]) if len(hit) else None


def causal_evidence(table: pd.DataFrame) -> dict:
    """The layers read off the concept-patching curves (means over pairs; see the docs).

    - ``tgt_concept_falls_at``: first layer where P(B in Y') drops below half its
      value at the first layer patched -- from here the patch overrides the target.
    - ``src_concept_rises_at``: first layer where P(A in Y') reaches half its peak.
    - ``concept_transfer_layers``: [first, last] of the run of layers around the
      peak of P(A in Y') where it stays at or above half its peak: the source's
      concept transfers while the target's output language is kept.
    - ``output_language_layer``: first layer after that peak where P(A in Y)
      exceeds P(A in Y'): the patched latent now also carries its own output
      language Y, so by that layer the source prompt has fixed its output language.
    """
    evidence: dict = {"method": "Dumas et al. 2025 concept patching (dftlens patch)", "experiments": []}
    for (src, tgt), g in table[table["experiment"] == "concept"].groupby(["source", "target"], sort=False):
        g = g.set_index("layer").sort_index()
        p_a, p_ay, p_b = g["p_src_concept"], g["p_src_concept_src_lang"], g["p_tgt_concept"]
        peak = int(p_a.idxmax())
        above = p_a >= 0.5 * p_a.max()
        lo = hi = peak
        while lo - 1 in above.index and above[lo - 1]:
            lo -= 1
        while hi + 1 in above.index and above[hi + 1]:
            hi += 1
        later = g.index >= peak
        evidence["experiments"].append({
            "source": src, "target": tgt, "n_pairs": int(g["n_pairs"].iloc[0]),
            "tgt_concept_falls_at": _first(p_b < 0.5 * p_b.iloc[0]),
            "src_concept_rises_at": _first(above),
            "src_concept_peak_layer": peak, "src_concept_peak": round(float(p_a.max()), 4),
            "concept_transfer_layers": [lo, hi],
            "output_language_layer": _first((p_ay > p_a) & later),
        })
    for (src, tgt), g in table[table["experiment"] == "mean_latent"].groupby(["source", "target"], sort=False):
        g = g.set_index("layer").sort_index()
        best = int(g["acc_patched"].idxmax())
        evidence["mean_latent"] = {
            "sources": src, "target": tgt, "n_pairs": int(g["n_pairs"].iloc[0]),
            "best_layer": best, "acc_patched": round(float(g.loc[best, "acc_patched"]), 4),
            "acc_unpatched": round(float(g["acc_unpatched"].iloc[0]), 4),
        }
    exps = evidence["experiments"]
    if exps:
        evidence["output_language_layer"] = exps[0]["output_language_layer"]
        evidence["concept_transfer_layers"] = exps[0]["concept_transfer_layers"]
    return evidence


def causal_check(causal: dict, lc: int, et: int) -> dict:
    """``causal`` plus the layer rule's two checks (see ``layer_choice``, rule 6); LC/ET unchanged."""
    out = dict(causal)
    transfer = causal.get("concept_transfer_layers")
    if transfer:
        out["lc_before_concept_transfer"] = bool(lc <= transfer[1])
        out["et_in_concept_transfer"] = bool(transfer[0] <= et <= transfer[1])
    return out
