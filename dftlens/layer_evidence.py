"""What a layer choice rests on: the typed ``evidence`` of ``layers.json``.

One definition, read and written by :class:`dftlens.layers.LayerChoice`. The JSON
object (``layers.json`` ``"evidence"``) holds::

    {
      "rule": "current",                         # the rule that decided: current | entropy
      "lc_decided_by": "alignment",              # what set LC (a rule step, or "user override")
      "et_decided_by": "english_onset",
      "rule_choice": {"lc": 3, "et": 13},        # each rule's own answer, before overrides
      "overrides": {"et": 12},                   # user overrides (--lc-layer/--et-layer), if any
      "params": {...},                           # the rule's thresholds (RuleParams)
      "measures": {"p_en_at_et": 0.08, ...},     # single numbers the rule read
      "curves": {"p_en": [...], ...},            # per-layer curves the rule read
      "support": {"lc": {"layer": 3, "shares": {"3": 0.97, "2": 0.03},
                         "interval": [3, 3], "n_resamples": 200}, "et": {...}},
      "readings": [{"kind": "english_onset", "signal": "et", "layer": 13,
                    "interval": [12, 13], "note": ""}, ...],
      "provisional": ["..."],                    # reasons; empty: the choice is not provisional
      "rule_subsets": [...], "prompt_counts": [...],
      "causal": {...},                           # dftlens probe --causal only
      "overlap": {...}                           # token-set overlap policy and its sensitivity
    }

Keys of older files (``rule`` as the thresholds' object, ``lc_rule_choice``,
``p_en_peak`` at the top, ...) are read into the new places; keys this module does
not know are kept in :attr:`Evidence.extra` and written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import DataError

SIGNALS = ("lc", "et")
MEASURE_KEYS = ("p_en_peak", "p_en_at_et", "p_target_at_et", "p_input_at_et", "entropy_at_lc", "entropy_at_et",
                "sharp_entropy_drops", "alignment_step_at_lc")


@dataclass(frozen=True)
class Support:
    """The bootstrap of one layer (Efron's percentile bootstrap over items, see ``layer_choice``).

    ``layer``: the layer the rule chose on all items; ``shares``: layer -> share of the
    ``n_resamples`` resamples that chose it (sums to 1); ``interval``: ``(lo, hi)``, the
    2.5th and 97.5th percentiles of the resampled layers (0-based block indices).
    """

    layer: int
    shares: dict[int, float]
    interval: tuple[int, int]
    n_resamples: int

    @property
    def share(self) -> float:
        """The share of resamples that chose :attr:`layer` (0 when none did)."""
        return self.shares.get(self.layer, 0.0)

    def to_dict(self) -> dict:
        """JSON form: ``{"layer", "shares" (string keys), "interval", "n_resamples"}``."""
        return {"layer": self.layer, "shares": {str(k): round(v, 4) for k, v in sorted(self.shares.items())},
                "interval": list(self.interval), "n_resamples": self.n_resamples}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Support":
        """Parse :meth:`to_dict`'s form; DataError naming ``where`` otherwise."""
        try:
            return cls(int(data["layer"]), {int(k): float(v) for k, v in data["shares"].items()},
                       (int(data["interval"][0]), int(data["interval"][1])), int(data["n_resamples"]))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise DataError(f"{where}: each evidence.support entry needs layer, shares, interval [lo, hi] "
                            "and n_resamples.") from None


@dataclass(frozen=True)
class Reading:
    """What one kind of evidence says: the layer it points to for one signal, with its interval.

    ``kind``: a key of :data:`dftlens.analysis.evidence_kinds.KINDS`; ``signal``: ``"lc"``,
    ``"et"`` or ``"window"`` (a range such as the patching window); ``layer`` None: this kind
    has no answer here (``note`` says why); ``interval``: ``(lo, hi)`` block indices or None.
    """

    kind: str
    signal: str
    layer: int | None
    interval: tuple[int, int] | None = None
    note: str = ""

    def to_dict(self) -> dict:
        """JSON form."""
        return {"kind": self.kind, "signal": self.signal, "layer": self.layer,
                "interval": list(self.interval) if self.interval is not None else None, "note": self.note}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Reading":
        """Parse :meth:`to_dict`'s form; DataError naming ``where`` otherwise."""
        try:
            interval = data.get("interval")
            return cls(str(data["kind"]), str(data["signal"]),
                       None if data.get("layer") is None else int(data["layer"]),
                       None if interval is None else (int(interval[0]), int(interval[1])), str(data.get("note", "")))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise DataError(f"{where}: each evidence.readings entry needs kind, signal, layer and interval.") from None


@dataclass(frozen=True)
class Evidence:
    """What the layer rule saw and decided (module docstring); frozen, changed with :meth:`but`."""

    rule: str = "current"
    lc_decided_by: str = ""
    et_decided_by: str = ""
    rule_choice: dict[str, dict[str, int | None]] = field(default_factory=dict)  # rule -> {"lc", "et"}
    overrides: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    support: dict[str, Support] = field(default_factory=dict)
    readings: tuple[Reading, ...] = ()
    provisional: tuple[str, ...] = ()
    rule_subsets: list[dict] = field(default_factory=list)
    prompt_counts: list[dict] = field(default_factory=list)
    causal: dict | None = None
    overlap: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def decided_by(self, signal: str) -> str:
        """``lc_decided_by`` or ``et_decided_by``."""
        return self.lc_decided_by if signal == "lc" else self.et_decided_by

    def but(self, **changes: Any) -> "Evidence":
        """A copy with ``changes`` (dataclasses.replace)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The JSON object of the module docstring (empty parts left out)."""
        out: dict[str, Any] = {"rule": self.rule, "lc_decided_by": self.lc_decided_by,
                               "et_decided_by": self.et_decided_by}
        optional = {
            "rule_choice": self.rule_choice, "overrides": self.overrides, "params": self.params,
            "measures": self.measures, "curves": self.curves,
            "support": {k: v.to_dict() for k, v in self.support.items()},
            "readings": [r.to_dict() for r in self.readings], "provisional": list(self.provisional),
            "rule_subsets": self.rule_subsets, "prompt_counts": self.prompt_counts, "causal": self.causal,
            "overlap": self.overlap,
        }
        out.update({k: v for k, v in optional.items() if v or k == "provisional"})
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "layers.json") -> "Evidence":
        """Parse ``layers.json``'s ``evidence`` (older layouts too); DataError naming ``where``."""
        if not isinstance(data, dict):
            raise DataError(f"{where}: 'evidence' must be an object.")
        data = dict(data)
        rule = data.pop("rule", "current")
        params = data.pop("params", {})
        if isinstance(rule, dict):  # files before 0.2 kept the thresholds under "rule"
            rule, params = "current", rule
        measures = dict(data.pop("measures", {}) or {})
        for key in MEASURE_KEYS:
            if key in data:
                measures[key] = data.pop(key)
        rule_choice = data.pop("rule_choice", {}) or {}
        overrides = dict(data.pop("overrides", {}) or {})
        for signal in SIGNALS:  # older files: "<signal>_rule_choice" next to "user override"
            old = data.pop(f"{signal}_rule_choice", None)
            if old is not None:
                rule_choice.setdefault("current", {})[signal] = old
        support = data.pop("support", {}) or {}
        readings = data.pop("readings", []) or []
        if not isinstance(support, dict) or not isinstance(readings, list):
            raise DataError(f"{where}: evidence.support must be an object and evidence.readings a list.")
        provisional = data.pop("provisional", []) or []
        if isinstance(provisional, str) or not all(isinstance(r, str) for r in provisional):
            raise DataError(f"{where}: evidence.provisional must be a list of reasons (sentences).")
        known = {k: data.pop(k) for k in ("lc_decided_by", "et_decided_by", "curves", "rule_subsets",
                                          "prompt_counts", "causal", "overlap") if k in data}
        return cls(str(rule), str(known.get("lc_decided_by") or ""), str(known.get("et_decided_by") or ""),
                   rule_choice, overrides, dict(params), measures,
                   dict(known.get("curves") or {}),
                   {k: Support.from_dict(v, where) for k, v in support.items()},
                   tuple(Reading.from_dict(r, where) for r in readings), tuple(provisional),
                   list(known.get("rule_subsets") or []), list(known.get("prompt_counts") or []),
                   known.get("causal"), known.get("overlap"), data)
