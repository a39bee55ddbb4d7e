"""The kinds of layer evidence shown side by side (``evidence.readings``, the "layer evidence" figure).

Each kind reads one measurement and says which layer it points to, with an interval:

- ``english_onset`` (logit lens, ET): the current rule's English onset (rule 2 of
  :mod:`.layer_choice`); interval from the item bootstrap (:mod:`.layer_bootstrap`).
- ``alignment`` (probes, LC): the layer where cross-lingual retrieval accuracy rises
  most from the layer before, over ``1..L-2``; no interval (the probes' sentences are
  not resampled).
- ``entropy`` (Huo et al., LC and ET): the first and second sharp entropy drop
  (rule 5); intervals from the item bootstrap.
- ``causal`` (``probe --causal``): the patching window (concept transfers, output
  language kept) and the layer where the output language switches
  (:func:`.patch_evidence.causal_evidence`).
- ``neurons`` (``probe --neurons DIR``, a ``dftlens neurons`` run): the layers between the bottom
  and top clusters of language-specific neurons (Tang et al. 2024), where no language's neurons
  concentrate.
- ``steering`` (``probe --steering DIR``, a ``dftlens steer`` run): the layer where steering
  switches the answer language most, with the span of the three best layers.

Adding a kind is one entry in :data:`KINDS`: a name, a label and a function from
:class:`KindContext` to a list of :class:`~dftlens.layer_evidence.Reading` (read extra
measurements from ``KindContext.inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..layer_evidence import Reading

NOT_RESAMPLED = "no interval: the probes' sentences are not resampled"


@dataclass(frozen=True)
class KindContext:
    """What the kinds read: the model's ``n_layers``, the rules' curves, the probes' ``alignment``
    (or None), each rule's answer on all items (``answers``: rule -> RuleAnswer), the bootstrap
    ``draws`` (rule -> signal -> [n_resamples], -1: no answer), ``causal`` (or None) and
    ``inputs`` (further measurements by name, for kinds added later)."""

    n_layers: int
    curves: pd.DataFrame
    alignment: pd.Series | None
    answers: dict
    draws: dict[str, dict[str, np.ndarray]]
    causal: dict | None = None
    inputs: dict = field(default_factory=dict)


def _interval(draws: np.ndarray | None) -> tuple[int, int] | None:
    if draws is None or not (draws >= 0).any():
        return None
    found = draws[draws >= 0]
    return int(np.quantile(found, 0.025, method="lower")), int(np.quantile(found, 0.975, method="higher"))


def english_onset(ctx: KindContext) -> list[Reading]:
    """The logit lens's English onset (ET)."""
    answer = ctx.answers.get("current")
    if answer is None or answer.et_by != "english_onset":
        return [Reading("english_onset", "et", None, None, "no English pivot: peak P(en) under min_en_mass")]
    return [Reading("english_onset", "et", answer.et, _interval(ctx.draws.get("current", {}).get("et")))]


def alignment_jump(ctx: KindContext) -> list[Reading]:
    """The probes' steepest rise of retrieval accuracy (LC)."""
    if ctx.alignment is None or not ctx.alignment.notna().any() or ctx.n_layers < 3:
        return [Reading("alignment", "lc", None, None, "no probes ran")]
    align = np.nan_to_num(ctx.alignment.reindex(range(ctx.n_layers)).to_numpy(float))
    inner = np.arange(1, ctx.n_layers - 1)
    return [Reading("alignment", "lc", int(inner[np.argmax(align[inner] - align[inner - 1])]), None, NOT_RESAMPLED)]


def entropy_drops(ctx: KindContext) -> list[Reading]:
    """Huo et al.'s first (LC) and second (ET) sharp entropy drop."""
    answer, draws = ctx.answers.get("entropy"), ctx.draws.get("entropy", {})
    out = []
    for signal, missing in (("lc", "no sharp entropy drop"), ("et", "no second sharp entropy drop")):
        layer = getattr(answer, signal) if answer is not None else None
        out.append(Reading("entropy", signal, layer, _interval(draws.get(signal)) if layer is not None else None,
                           "" if layer is not None else missing))
    return out


def patching_window(ctx: KindContext) -> list[Reading]:
    """Dumas et al.'s concept patching: the window where the concept moves and the language switch."""
    if not ctx.causal:
        return []
    window = ctx.causal.get("concept_transfer_layers")
    switch = ctx.causal.get("output_language_switch")
    return [
        Reading("causal", "window", ctx.causal.get("src_concept_peak_layer") if window else None,
                tuple(window) if window else None, "" if window else ctx.causal.get("window_note", "below the floor")),
        Reading("causal", "switch", switch, None,
                "" if switch is not None else ctx.causal.get("switch_note", "below the floor")),
    ]


def language_neurons(ctx: KindContext) -> list[Reading]:
    """Tang et al.'s language-specific neurons (``probe --neurons DIR``): the language-agnostic middle
    between the bottom and top clusters of neurons (``summary.json``'s cluster edges)."""
    summary = ctx.inputs.get("neurons")
    if not summary:
        return []
    end, start = summary.get("bottom_cluster_end"), summary.get("top_cluster_start")
    if end is None or start is None or start - end < 2:
        return [Reading("neurons", "window", None, None, "no layer between the bottom and top neuron clusters")]
    return [Reading("neurons", "window", end + 1, (end + 1, start - 1))]


def steering_layers(ctx: KindContext) -> list[Reading]:
    """Language steering (``probe --steering DIR``): the layer whose steering switches the answer most."""
    summary = ctx.inputs.get("steering")
    if not summary:
        return []
    best, layers = summary.get("best") or {}, summary.get("best_layers") or []
    if not best or not best.get("switched"):
        return [Reading("steering", "switch", None, None, "no steered layer switched an answer")]
    return [Reading("steering", "switch", int(best["layer"]), (min(layers), max(layers)) if layers else None,
                    f"switch rate {best['switched']:.2f} at strength {best.get('strength')}")]


@dataclass(frozen=True)
class EvidenceKind:
    """One kind of evidence: ``name`` (the readings' ``kind``), ``label`` (figure and table) and ``read``."""

    name: str
    label: str
    read: Callable[[KindContext], list[Reading]]


KINDS: dict[str, EvidenceKind] = {k.name: k for k in (
    EvidenceKind("english_onset", "logit lens: English onset", english_onset),
    EvidenceKind("alignment", "probes: retrieval alignment jump", alignment_jump),
    EvidenceKind("entropy", "entropy drops (Huo et al.)", entropy_drops),
    EvidenceKind("causal", "activation patching (Dumas et al.)", patching_window),
    EvidenceKind("neurons", "language neurons (Tang et al.)", language_neurons),
    EvidenceKind("steering", "language steering", steering_layers),
)}
"""The evidence kinds by name, in the order the figure and table list them; add a kind here."""


def read_all(ctx: KindContext) -> tuple[Reading, ...]:
    """Every kind's readings, in :data:`KINDS` order."""
    return tuple(r for kind in KINDS.values() for r in kind.read(ctx))


def disagreements(readings: tuple[Reading, ...], lc: int | None, et: int | None) -> list[str]:
    """Plain sentences for each kind whose layer (or interval) misses the chosen LC or ET."""
    chosen = {"lc": lc, "et": et}
    out = []
    for r in readings:
        layer = chosen.get(r.signal)
        if layer is None or r.layer is None:
            continue
        lo, hi = r.interval if r.interval is not None else (r.layer, r.layer)
        if not lo <= layer <= hi:
            label = KINDS[r.kind].label if r.kind in KINDS else r.kind
            out.append(f"{label} points to {r.signal.upper()} {r.layer} (interval {lo}-{hi}), not {layer}.")
    return out


def choice_line(choice) -> str:
    """One terminal line: each layer, what decided it and its bootstrap support, then the hooks."""
    parts = []
    for signal in ("lc", "et"):
        layer, by = choice.layer(signal), choice.evidence.decided_by(signal)
        s = choice.evidence.support.get(signal)
        how = f"{by}; chosen in {s.share:.0%} of {s.n_resamples} resamples, interval {s.interval[0]}-{s.interval[1]}" \
            if s is not None else by
        parts.append(f"{signal.upper()} layer {layer} ({how})")
    hooks = choice.hooks
    return f"{', '.join(parts)} of {choice.n_layers}; hooks {hooks.get('lc')}, {hooks.get('et')}"


def evidence_line(choice) -> str:
    """One terminal line: the layer each evidence kind points to (``kind LC 3 [2-3]``)."""
    parts = []
    for r in choice.evidence.readings:
        if r.layer is None:
            continue
        span = f" [{r.interval[0]}-{r.interval[1]}]" if r.interval is not None and r.interval != (r.layer, r.layer) else ""
        parts.append(f"{r.kind} {r.signal.upper()} {r.layer}{span}")
    return "evidence: " + ("; ".join(parts) if parts else "none")


def causal_line(causal: dict | None) -> str | None:
    """One terminal line for ``probe --causal``: the patching window and the output-language switch."""
    if not causal:
        return None
    window = causal.get("concept_transfer_layers")
    switch = causal.get("output_language_switch")
    return (f"patching: concept moves at layers {window[0]}-{window[1]}" if window else
            f"patching: no concept transfer above the floor ({causal.get('window_note', '')})") + (
        f"; output language switches at layer {switch}" if switch is not None else
        "; no output-language switch above the floor")
