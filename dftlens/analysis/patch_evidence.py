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
CAUSAL_FLOOR = 0.05  # a patching probability (mean over pairs) below this reads as "nothing moved"

def summarise_patching(items: pd.DataFrame) -> pd.DataFrame:
    """patching.csv: per experiment, source, target and layer: means, 95% CIs (_lo/_hi), n_pairs."""
    columns = [c for c in dict.fromkeys(CONCEPT_COLUMNS + MEAN_COLUMNS) if c in items]
    bounds = {c: (0.0, 1.0) for c in columns}
    table = summarise(items, ["experiment", "source", "target", "layer"], columns, bounds=bounds)
    return table.rename(columns={"n_items": "n_pairs"})


def _first(mask: pd.Series) -> int | None:
    hit = mask[mask]
    return int(hit.index[0]) if len(hit) else None


def causal_evidence(table: pd.DataFrame, floor: float = CAUSAL_FLOOR) -> dict:
    """The layers read off the concept-patching curves (means over pairs), with a floor.

    The four quantities (Dumas et al.): the source prompt translates concept A into
    language Y, the target prompt B into Y'; after patching at layer l the target's output
    puts P(A in Y'), P(A in Y), P(B in Y') and P(B in Y) on each word's tokens. A reading
    needs its probability to reach ``floor`` (default :data:`CAUSAL_FLOOR`, 0.05 mean
    probability over pairs); below it the reading is None and ``*_note`` says why.

    - ``tgt_concept_falls_at``: first layer where P(B in Y') drops below half its
      value at the first layer patched -- from here the patch overrides the target.
    - ``src_concept_rises_at``: first layer where P(A in Y') reaches half its peak (and the floor).
    - ``concept_transfer_layers``: [first, last] of the run of layers around the peak of
      P(A in Y') where it stays at or above half its peak and the floor: the source's
      concept transfers while the target's output language is kept (the patching window).
    - ``output_language_switch``: first layer where the output is in the source's
      language: P(A in Y) + P(B in Y) reaches the floor and exceeds P(A in Y') + P(B in Y').
    - ``concept_moves_at``: first layer where the source's concept wins: P(A in Y') +
      P(A in Y) reaches the floor and exceeds P(B in Y') + P(B in Y).
    - ``output_language_layer``: first layer after the window's peak where P(A in Y)
      reaches the floor and exceeds P(A in Y'): the patched latent carries its own output language.
    """
    evidence: dict = {"method": "Dumas et al. 2025 concept patching (dftlens patch)", "floor": floor,
                      "experiments": []}
    for (src, tgt), g in table[table["experiment"] == "concept"].groupby(["source", "target"], sort=False):
        g = g.set_index("layer").sort_index()
        p_a, p_ay, p_b = g["p_src_concept"], g["p_src_concept_src_lang"], g["p_tgt_concept"]
        p_by = g["p_tgt_concept_src_lang"] if "p_tgt_concept_src_lang" in g else p_b * 0
        peak = int(p_a.idxmax())
        window = None
        above = (p_a >= 0.5 * p_a.max()) & (p_a >= floor)
        if above[peak]:
            lo = hi = peak
            while lo - 1 in above.index and above[lo - 1]:
                lo -= 1
            while hi + 1 in above.index and above[hi + 1]:
                hi += 1
            window = [lo, hi]
        language, concept = p_ay + p_by, p_a + p_ay
        evidence["experiments"].append({
            "source": src, "target": tgt, "n_pairs": int(g["n_pairs"].iloc[0]),
            "tgt_concept_falls_at": _first(p_b < 0.5 * p_b.iloc[0]),
            "src_concept_rises_at": _first(above),
            "src_concept_peak_layer": peak, "src_concept_peak": round(float(p_a.max()), 4),
            "concept_transfer_layers": window,
            "window_note": "" if window else f"P(A in Y') peaks at {float(p_a.max()):.3g}, under the floor {floor:g}",
            "output_language_switch": _first((language >= floor) & (language > p_a + p_b)),
            "switch_note": "" if (language >= floor).any() else
            f"P(A in Y) + P(B in Y) stays under the floor {floor:g}",
            "concept_moves_at": _first((concept >= floor) & (concept > p_b + p_by)),
            "output_language_layer": _first((p_ay > p_a) & (p_ay >= floor) & (g.index >= peak)),
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
    if exps:  # the first experiment's reading at the top, where layers.json readers look
        for key in ("concept_transfer_layers", "window_note", "src_concept_peak_layer", "output_language_switch",
                    "switch_note", "concept_moves_at", "output_language_layer"):
            evidence[key] = exps[0][key]
    return evidence


def causal_check(causal: dict, lc: int, et: int) -> dict:
    """``causal`` plus the layer rule's two checks (see ``layer_choice``, rule 7); LC/ET unchanged."""
    out = dict(causal)
    transfer = causal.get("concept_transfer_layers")
    if transfer:
        out["lc_before_concept_transfer"] = bool(lc <= transfer[1])
        out["et_in_concept_transfer"] = bool(transfer[0] <= et <= transfer[1])
    return out
