"""``layers.json`` and :class:`LayerChoice`: the one carrier of a layer choice from probe to loss.

``dftlens probe`` builds a :class:`LayerChoice` (:func:`dftlens.analysis.layer_choice.choose_layers`)
and writes ``layers.json``; ``train``, ``compare`` and ``patch`` read it with
:meth:`LayerChoice.load`, which validates the whole file before any model is loaded and
reports a problem as one sentence naming the file (:class:`~dftlens.errors.DataError` for a
malformed file, :class:`~dftlens.errors.LayerError` for layers that do not fit). The route
to the loss: ``TrainConfig.layer_choice()`` -> :meth:`LayerChoice.with_layers` (the user's
``--lc-layer``/``--et-layer``, recorded in the evidence) -> :meth:`LayerChoice.bind` (the
loaded model has those blocks and sites) -> ``DFTLoss(lm, choice, ...)``, which reads
:attr:`LayerChoice.lc_layer`, :attr:`LayerChoice.et_layer` and :attr:`LayerChoice.hooks`.

Format (UTF-8 JSON object; ``hooks`` is authoritative)::

    {
      "model": "gemma3-270m",
      "n_layers": 18,                         # blocks of the model it was chosen for
      "lc_layer": 3, "et_layer": 13,          # 0-based block indices (optional; must match hooks)
      "languages": ["en", "fr", "zh"],        # optional
      "provisional": false,                   # true: evidence.provisional gives the reasons
      "evidence": {...},                      # optional: dftlens.layer_evidence.Evidence
      "hooks": {"lc": "blocks.3.hook_resid_post", "et": "blocks.13.hook_resid_post"}
    }

The LC and ET signals may name different sites (e.g. ``resid_mid`` for LC and
``resid_post`` for ET); LC must come before ET in a forward pass (:func:`check_order`,
the one place that rule is checked).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from .errors import DataError, LayerError
from .io import read_json, write_json
from .layer_evidence import Evidence
from .models.hook_points import SITES, hook_name, parse_hook_name

FILENAME = "layers.json"
SIGNALS = ("lc", "et")


class ProvisionalLayers(UserWarning):
    """A layer choice marked provisional was used (``train`` warns and goes on)."""


def check_order(lc: int | None, et: int | None, n_layers: int | None = None, *, lc_site: str = "resid_post",
                et_site: str = "resid_post", where: str = "") -> None:
    """The LC/ET rule: each layer a block of the model (when ``n_layers`` is known), LC before ET.

    ``None`` skips a signal (not chosen yet, or switched off). ``where`` prefixes the
    message (a file name). Raises LayerError with one sentence.
    """
    the = f"{where}: the" if where else "The"
    for name, value in (("LC", lc), ("ET", et)):
        if value is not None and (value < 0 or (n_layers is not None and value >= n_layers)):
            upto = f"blocks 0..{n_layers - 1}" if n_layers is not None else "0-based block indices"
            raise LayerError(f"{the} {name} layer {value} is out of range: the model has {upto}.")
    if lc is not None and et is not None and (lc, SITES.index(lc_site)) >= (et, SITES.index(et_site)):
        raise LayerError(f"{the} LC layer ({hook_name(lc, lc_site)}) must come before the ET layer "
                         f"({hook_name(et, et_site)}) in the forward pass; adjust --lc-layer/--et-layer.")


@dataclass(frozen=True)
class LayerChoice:
    """The LC and ET layers (0-based block indices) with the hook site of each signal.

    Frozen: change it with :meth:`with_layers`. The constructor checks the sites, the
    layers' range (``0 <= layer < n_layers``) and the order (:func:`check_order`); a layer
    may be None only for a signal a training run switches off (``layers.json`` always has
    both). ``evidence`` (:class:`~dftlens.layer_evidence.Evidence`) is what the rule saw.
    Raises LayerError for a choice that breaks these rules.
    """

    model: str
    n_layers: int
    lc_layer: int | None
    et_layer: int | None
    languages: tuple[str, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)
    lc_site: str = "resid_post"
    et_site: str = "resid_post"
    source: str | None = field(default=None, compare=False)  # the file it was read from, for messages

    def __post_init__(self) -> None:
        for site in (self.lc_site, self.et_site):
            if site not in SITES:
                raise LayerError(f"Unknown hook site {site!r}; use one of {', '.join(SITES)}.")
        if isinstance(self.evidence, dict):  # a plain dict (notebooks, older callers) becomes the typed form
            object.__setattr__(self, "evidence", Evidence.from_dict(self.evidence, self.source or FILENAME))
        object.__setattr__(self, "languages", tuple(self.languages))
        check_order(self.lc_layer, self.et_layer, self.n_layers, lc_site=self.lc_site, et_site=self.et_site,
                    where=self.source or "")

    @property
    def hooks(self) -> dict[str, str]:
        """``{"lc": "blocks.{lc}.hook_{site}", "et": ...}``: the names the losses and patches attach to."""
        out = {}
        for signal, layer, site in (("lc", self.lc_layer, self.lc_site), ("et", self.et_layer, self.et_site)):
            if layer is not None:
                out[signal] = hook_name(layer, site)
        return out

    @property
    def site(self) -> str:
        """The common site of both hooks (``resid_post`` unless the file names another)."""
        return self.lc_site if self.lc_site == self.et_site else f"{self.lc_site}/{self.et_site}"

    @property
    def provisional(self) -> tuple[str, ...]:
        """Why the choice is provisional (one sentence each); empty when it is not."""
        return self.evidence.provisional

    def warning(self) -> str | None:
        """One line saying the choice is provisional and why (``probe`` prints it, ``train`` repeats
        it); None when it is not provisional."""
        if not self.provisional:
            return None
        where = f"{self.source}: " if self.source else ""
        return (f"{where}the layer choice LC {self.lc_layer}, ET {self.et_layer} is provisional: "
                + " ".join(self.provisional))

    def layer(self, signal: str) -> int | None:
        """The LC layer for ``signal == "lc"``, the ET layer for ``"et"``."""
        return {"lc": self.lc_layer, "et": self.et_layer}[signal]

    def with_layers(self, lc: int | None = None, et: int | None = None, *, lc_site: str | None = None,
                    et_site: str | None = None) -> "LayerChoice":
        """A copy with the user's LC/ET layers (None: keep), recorded in the evidence.

        Each override sets ``evidence.<signal>_decided_by`` to ``"user override"`` and
        ``evidence.overrides[signal]``; the rule's own answer stays in
        ``evidence.rule_choice``. Raises LayerError when the result breaks the order rule.
        """
        changes: dict = {}
        ev = self.evidence
        overrides = dict(ev.overrides)
        for signal, value in (("lc", lc), ("et", et)):
            if value is not None:
                changes[f"{signal}_layer"] = value
                overrides[signal] = value
                ev = ev.but(**{f"{signal}_decided_by": "user override"})
        changes.update({k: v for k, v in (("lc_site", lc_site), ("et_site", et_site)) if v is not None})
        return replace(self, evidence=ev.but(overrides=overrides), **changes) if changes else self

    def without(self, signal: str) -> "LayerChoice":
        """A copy with ``signal``'s layer cleared (a training run that switches that signal off)."""
        return replace(self, **{f"{signal}_layer": None})

    def to_dict(self) -> dict:
        """The ``layers.json`` content: model, n_layers, both layers, languages, evidence and :attr:`hooks`."""
        return {"model": self.model, "n_layers": self.n_layers, "lc_layer": self.lc_layer,
                "et_layer": self.et_layer, "languages": list(self.languages),
                "provisional": bool(self.provisional), "evidence": self.evidence.to_dict(), "hooks": self.hooks}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (or ``path/layers.json`` for a directory) atomically."""
        if self.lc_layer is None or self.et_layer is None:
            raise LayerError("A layers.json needs both an LC and an ET layer.")
        path = Path(path)
        if path.is_dir():
            path = path / FILENAME
        write_json(path, self.to_dict())
        return path

    def check_model(self, n_layers: int, name: str = "the model") -> "LayerChoice":
        """Refuse a choice made for a model with another number of blocks."""
        where = self.source or FILENAME
        if self.n_layers != n_layers:
            raise LayerError(f"{where} was written for a model with {self.n_layers} layers, but {name} has "
                             f"{n_layers}; probe this model first or pass --lc-layer/--et-layer.")
        return self

    def bind(self, lm) -> "LayerChoice":
        """This choice, checked against a loaded :class:`~dftlens.models.LensModel`: the same number
        of blocks (:meth:`check_model`) and both hooks among the model's sites. Raises LayerError."""
        self.check_model(lm.n_layers, lm.name)
        for name in self.hooks.values():
            lm.validate_hook(name)
        return self

    @classmethod
    def from_dict(cls, data, where: str = FILENAME) -> "LayerChoice":
        """Validate a parsed ``layers.json``; every problem is one sentence naming ``where``."""
        if not isinstance(data, dict):
            raise DataError(f"{where} must hold a JSON object, not {_kind(data)}.")
        hooks = data.get("hooks")
        if hooks is None:
            raise DataError(f"{where} has no 'hooks'; it must name the LC and ET hooks, e.g. "
                            '"hooks": {"lc": "blocks.3.hook_resid_post", "et": "blocks.13.hook_resid_post"}.')
        if not isinstance(hooks, dict):
            raise DataError(f"{where}: 'hooks' must be an object like "
                            '{"lc": "blocks.3.hook_resid_post", "et": "blocks.13.hook_resid_post"}, '
                            f"not {_kind(hooks)}.")
        parsed = {}
        for signal in SIGNALS:
            name = hooks.get(signal)
            if not isinstance(name, str):
                raise DataError(f"{where}: hooks.{signal} must be a hook name such as "
                                f"'blocks.3.hook_resid_post', not {_kind(name)}.")
            try:
                parsed[signal] = parse_hook_name(name)
            except LayerError as exc:
                raise LayerError(f"{where}: hooks.{signal}: {exc}") from None
        n_layers = data.get("n_layers")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise DataError(f"{where}: 'n_layers' must be a positive whole number (the model's blocks), "
                            f"not {n_layers!r}.")
        for signal in SIGNALS:
            stated = data.get(f"{signal}_layer")
            if stated is not None and stated != parsed[signal][0]:
                raise DataError(f"{where}: '{signal}_layer' is {stated!r} but hooks.{signal} names block "
                                f"{parsed[signal][0]}; make them agree (the hooks are what training uses).")
        languages = data.get("languages", [])
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            raise DataError(f"{where}: 'languages' must be a list of language codes, not {_kind(languages)}.")
        evidence = data.get("evidence", {})
        if not isinstance(evidence, dict):
            raise DataError(f"{where}: 'evidence' must be an object, not {_kind(evidence)}.")
        model = data.get("model", "")
        if not isinstance(model, str):
            raise DataError(f"{where}: 'model' must be a name, not {_kind(model)}.")
        return cls(model, n_layers, parsed["lc"][0], parsed["et"][0], tuple(languages),
                   Evidence.from_dict(evidence, where), parsed["lc"][1], parsed["et"][1], source=where)

    @classmethod
    def load(cls, path: str | Path) -> "LayerChoice":
        """Read and validate ``path`` (a ``layers.json`` or a probe directory holding one).

        Raises DataError (one sentence naming the file): it does not exist, cannot be read, is
        damaged (not UTF-8, not valid JSON: :func:`dftlens.io.read_json`'s wording) or does not
        hold a valid layer choice (:meth:`from_dict`).
        """
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / FILENAME
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `dftlens probe` first or pass --lc-layer/--et-layer.")
        data = read_json(path)  # one sentence for a file that cannot be read or is not JSON
        return cls.from_dict(data, str(path))


def _kind(value) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    return {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def model_n_layers(model: str) -> int | None:
    """The number of blocks of ``model`` read from its config.json without loading weights (None: unknown)."""
    try:
        from transformers import AutoConfig

        from .models import resolve

        config = AutoConfig.from_pretrained(str(resolve(model).path), trust_remote_code=False)
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return int(config.num_hidden_layers)
    except Exception:  # the real load reports what is wrong with the model, in its own words
        return None


def parse_layers(value: str | Sequence[int] | None, what: str = "--layers") -> list[int] | None:
    """Block indices from ``"0,4-8"`` (ranges inclusive) or a list of ints; None or empty: None (all).

    Raises DataError for an entry that is neither a number nor a range ``a-b``, or a range with ``b < a``.
    """
    from .data.languages import split_list

    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return [int(v) for v in value] or None
    layers: list[int] = []
    for part in split_list(value):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise DataError(f"{what} entry {part!r} is not a layer or a range (e.g. 0,4-8).") from None
        if high < low:
            raise DataError(f"{what} range {part!r} runs backwards; write {high}-{low}.")
        layers.extend(range(low, high + 1))
    return layers or None
