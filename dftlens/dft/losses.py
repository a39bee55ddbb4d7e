"""The DFT losses, as docs/method/dft-losses.md states them.

``L = L_TFT + w_lc * L_LC + w_et * L_ET``, each component a mean (over the
micro-batch by default; over the whole optimizer step when the trainer passes
``norm``, see :func:`step_norm`):

- ``tft``: NLL of the target response (+ EOS) given the target query; mean over
  response tokens; query tokens masked.
- ``lc`` logits: layer-i states of ``[tgt query, en query text]`` decoded by the
  frozen unembedding (final norm + LM head + soft-cap, parameters detached),
  NLL of the English query tokens; mean over those tokens.
- ``lc`` feature: ``1 - cos(mean_q h_i(en query), mean_q h_i(tgt query))``; mean
  over examples.
- ``et`` logits: as LC logits at layer j, on ``[tgt query, en response + EOS]``.
- ``et`` feature: ``1 - cos(mean_q h_L(en query), mean_q h_j(tgt query))``, with
  ``h_L`` the last block's residual output (before the final norm, like every
  other layer's state here).
- ``lc``/``et`` contrastive: InfoNCE over the same pooled states (Liu & Niehues
  2025): the target query's state against the English queries of every example
  of the optimizer step, its own as the positive; mean over examples, in nats
  (:mod:`.contrastive_signal`, which also states the negatives under accumulation
  and data parallelism).

``mean_q`` averages the formatted query's tokens, BOS excluded, padding excluded.
The English side runs without gradients unless ``detach_english=False``.

Cost: the target-side states of the feature losses come from the same forward
pass as ``L_TFT`` (one capture of [hook_i, hook_j, last block]); the English pass
has no gradient; the logits passes stop at layer i or j (``lm.capture`` stops
there); every cross-entropy goes through :mod:`.chunked_ce`. :meth:`DFTLoss.backward`
also runs the logits passes' backward before the main pass's.

Prefix reuse (``reuse_prefix=True``, the default; :mod:`.prefix_reuse`): both
logits sequences start with the target query that the main pass already ran. The
main pass records every block's keys and values (a ``transformers`` cache passed to
``lm.capture`` as ``past_key_values``); each logits pass takes, row by row, the
longest common token prefix with the same row of the main pass (at most up to the
last query token, whose state the logits loss needs) and runs only each row's
remaining tokens up to layer i or j on top of those keys and values. The gradient
through the prefix is the same: in :meth:`DFTLoss.components` the reused
keys/values keep their graph; in :meth:`DFTLoss.backward` each logits pass
backpropagates into detached copies of them and their gradient is handed to the
main pass's backward (so the main graph is traversed once). With logits signals
only, :meth:`DFTLoss.backward` also splits the main pass at that prefix, so that
only one remainder's graph is alive at a time (peak memory close to TFT's).
Losses and gradients equal the full passes to float rounding
(tests/dft/test_dft_losses.py).

Feature normalisation (``feature_norm``: none, center, standardize, rms) is
:mod:`.feature_signal`; the denominators and the lens NLL :mod:`.loss_terms`; the
staged backward :mod:`.loss_backward`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import torch

from ..layers import LayerChoice
from .batches import Batch, Packed
from .contrastive_signal import DEFAULT_TEMPERATURE, CandidateBank, candidate_rows, info_nce, pool_step
from .feature_signal import FEATURE_NORMS, STD_EPS, RunningStats, cosine_loss, mean_pool, rms_normalise
from .loss_backward import StagedBackward
from .loss_terms import lm_loss
from ..models.kv_prefix import KVPrefix
from .prefix_reuse import continuation, reusable

@dataclass
class DFTLoss(StagedBackward):
    """The DFT objective of Huo et al. (AAAI 2025): ``L = L_TFT + w_lc * L_LC + w_et * L_ET``.

    ``DFTLoss(lm, choice, lc_signal=..., et_signal=..., ...)``: ``lm`` is a
    :class:`~dftlens.models.LensModel`; ``choice`` the :class:`~dftlens.layers.LayerChoice`
    whose ``lc_layer``/``et_layer`` and :attr:`~dftlens.layers.LayerChoice.hooks` the losses
    attach to (checked against ``lm`` with :meth:`~dftlens.layers.LayerChoice.bind`; None
    when both signals are off); ``lc_signal``/``et_signal`` are ``"logits"``, ``"feature"``
    or ``"off"`` (keyword-only, like everything after ``choice``). Every component is a mean
    in nats (cross-entropy, logits signals) or in ``1 - cos`` units (feature signals), as the
    module docstring states. :meth:`components` returns the scalar tensors ``tft``, ``lc``,
    ``et``, ``loss``; :meth:`backward` runs the passes' backward one after another and returns
    floats. Inputs: a :class:`~dftlens.dft.batches.Batch` of ``[b, t]`` token tensors.
    Raises ValueError for an unknown ``feature_norm`` or a signal that is on without a layer,
    LayerError when ``choice`` does not fit ``lm``.
    """

    lm: object
    choice: LayerChoice | None = None
    _: KW_ONLY
    lc_signal: str = "off"
    et_signal: str = "off"
    w_lc: float = 1.0
    w_et: float = 1.0
    detach_english: bool = True
    chunk: int | None = None
    feature_norm: str = "none"  # one of FEATURE_NORMS
    reuse_prefix: bool = True  # logits passes start from the main pass's keys/values
    temperature: float = DEFAULT_TEMPERATURE  # of the contrastive signal (InfoNCE)

    def __post_init__(self) -> None:
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, not {self.feature_norm!r}")
        for kind, signal in (("lc", self.lc_signal), ("et", self.et_signal)):
            if signal != "off" and (self.choice is None or self.choice.layer(kind) is None):
                raise ValueError(f"{kind}_signal={signal!r} needs a LayerChoice with an {kind.upper()} layer")
        if self.choice is not None:
            self.choice.bind(self.lm)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, not {self.temperature}")
        self.stats = RunningStats()
        self.bank: CandidateBank | None = None  # the step's contrastive candidates (prepare_step)

    @property
    def lc_hook(self) -> str | None:
        """The LC hook (``choice.hooks["lc"]``), None when the LC signal is off."""
        return self.choice.hooks["lc"] if self.lc_signal != "off" else None

    @property
    def et_hook(self) -> str | None:
        """The ET hook (``choice.hooks["et"]``), None when the ET signal is off."""
        return self.choice.hooks["et"] if self.et_signal != "off" else None

    def blocks_to(self, hook: str) -> int:
        """How many blocks a pass must run to reach ``hook`` (the LC/ET layer from the choice, plus 1)."""
        layers = {self.last_hook: self.lm.n_layers - 1}
        if self.choice is not None:
            layers.update({self.choice.hooks[k]: self.choice.layer(k) for k in self.choice.hooks})
        return layers[hook] + 1

    @property
    def last_hook(self) -> str:
        """Hook name of the last block's residual output (``h_L``, before the final norm): L_TFT and the ET feature."""
        return self.lm.hook_name(self.lm.n_layers - 1)

    def feature_pairs(self, signals: tuple[str, ...] = ("feature", "contrastive")) -> list[tuple[str, str, str]]:
        """(component, English-side hook, target-side hook) of each pooled-state loss whose signal is in ``signals``.

        The feature and the contrastive signals read the same states: LC ``h_i`` of both
        queries; ET ``h_L`` of the English query and ``h_j`` of the target query.
        """
        pairs = [("lc", self.lc_hook, self.lc_hook)] if self.lc_signal in signals else []
        return pairs + ([("et", self.last_hook, self.et_hook)] if self.et_signal in signals else [])

    def signal(self, kind: str) -> str:
        """The signal of component ``kind`` ("lc" or "et")."""
        return self.lc_signal if kind == "lc" else self.et_signal

    def _uses_stats(self) -> bool:
        return self.feature_norm in ("center", "standardize")

    def pooled(self, states: torch.Tensor, mask: torch.Tensor, hook: str) -> torch.Tensor:
        """[b, t, d] -> [b, d]: the vector the cosine compares, under ``feature_norm``."""
        return self.normalised(self.raw_pool(states, mask), hook)

    def raw_pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[b, t, d] -> [b, d] float32 mean over the mask (of RMS-normalised tokens under ``rms``)."""
        return mean_pool(rms_normalise(states), mask) if self.feature_norm == "rms" else mean_pool(states, mask)

    def normalised(self, pooled: torch.Tensor, hook: str) -> torch.Tensor:
        """A :meth:`raw_pool` vector [b, d] after ``center``/``standardize`` (running statistics at ``hook``)."""
        if self.feature_norm in ("none", "rms"):
            return pooled
        pooled = pooled - self.stats.mean[hook]  # pooling is linear: same as centring each token
        if self.feature_norm == "standardize":
            pooled = pooled / (self.stats.var[hook].sqrt() + STD_EPS)
        return pooled

    # -- the passes ---------------------------------------------------------
    def english_states(self, english: Packed) -> dict[str, torch.Tensor]:
        """English-query residual states [b, t, d] at the hooks the feature losses read.

        Layer i (LC), the last block (ET) and, for the running statistics, layer j.
        """
        names = {en for _, en, _ in self.feature_pairs()}
        if self._uses_stats():
            names |= {tgt for _, _, tgt in self.feature_pairs()}
        if not names:
            return {}
        cap = self.lm.capture(english.model_inputs(), names, grad=not self.detach_english)
        return dict(cap.activations)

    def main_pass(self, main: Packed, english: dict[str, torch.Tensor], english_mask: torch.Tensor | None = None,
                  norm: dict[str, float] | None = None, record: bool = False, gnorms: dict | None = None,
                  micro: int | None = None) -> tuple[dict[str, torch.Tensor], KVPrefix | None]:
        """L_TFT and the feature losses from one forward pass over [tgt query, tgt response].

        ``english``/``english_mask``: :meth:`english_states` and the English pool mask.
        ``norm``: each component's denominator (:func:`step_norm`); None: this batch's own mean.

        ``record``: also keep every block's keys and values (``lm.run_prefix``), for the
        logits passes to continue from; returned as the second item (None without ``record``). ``gnorms``: filled with
        ``<component>_gnorm``, the norm of the gradient of ``w * L`` with respect to
        the target-side residual states [b, t, d] at the loss's layer. ``micro``: this
        micro-batch's index in the step (:meth:`prepare_step`): the contrastive candidates
        are then the whole step's; None: the micro-batch's own.
        """
        norm = norm or {}
        names = {self.last_hook} | {tgt for _, _, tgt in self.feature_pairs()}
        if record:
            cap, prefix = self.lm.run_prefix(main.model_inputs(), names, grad=True)
        else:
            cap, prefix = self.lm.capture(main.model_inputs(), names, grad=True), None
        out = {"tft": lm_loss(self.lm, cap[self.last_hook], main.targets, frozen=False, chunk=self.chunk,
                              denominator=norm.get("tft"))}
        if self._uses_stats():
            for hook in {h for _, en, tgt in self.feature_pairs() for h in (en, tgt)}:
                tokens = [english[hook][english_mask]] if hook in english else []
                self.stats.update(hook, torch.cat(tokens + [cap[hook][main.pool_mask]]))
        for kind, en_hook, tgt_hook in self.feature_pairs():
            target = self.pooled(cap[tgt_hook], main.pool_mask, tgt_hook)
            if self.signal(kind) == "feature":
                out[kind] = cosine_loss(self.pooled(english[en_hook], english_mask, en_hook), target, norm.get(kind))
            else:
                own = self.raw_pool(english[en_hook], english_mask) if en_hook in english else None
                bank = self.bank if micro is not None else None  # None: the micro-batch's own examples
                candidates, positives = candidate_rows(bank, en_hook, micro, own, self.detach_english)
                out[kind] = info_nce(target, self.normalised(candidates, en_hook), positives, self.temperature,
                                     norm.get(kind))
            if gnorms is not None and out[kind].requires_grad:
                weight = self.w_lc if kind == "lc" else self.w_et
                (grad,) = torch.autograd.grad(weight * out[kind], cap[tgt_hook], retain_graph=True)
                gnorms[f"{kind}_gnorm"] = float(grad.float().norm())
        return out, prefix

    def logits_pass(self, packed: Packed, hook: str, prefix: list | None = None,
                    lengths: torch.Tensor | None = None, denominator: float | None = None,
                    frozen: bool = True) -> torch.Tensor:
        """NLL of the continuation of ``packed`` from the lens at ``hook`` (the pass stops there).

        The LC/ET logits losses (``frozen``: the frozen unembedding); with ``frozen=False``
        and the last block's hook, L_TFT. ``prefix``: per block ``(keys, values)``
        [b, kv_heads, >= P, head_dim] from the main pass; ``lengths`` [b]: how many of
        row b's leading positions they stand for (:func:`reusable`, ``P = max(lengths)``).
        Only the positions after them run (:func:`continuation`).
        """
        if not prefix or lengths is None or int(lengths.max()) == 0:
            cap = self.lm.capture(packed.model_inputs(), [hook], grad=True)
            return lm_loss(self.lm, cap[hook], packed.targets, frozen=frozen, chunk=self.chunk,
                           denominator=denominator)
        cached = KVPrefix.from_pairs(prefix, int(lengths.max()), self.blocks_to(hook))
        new, targets = continuation(packed, lengths)
        cap = self.lm.capture(cached.extend(new), [hook], grad=True)
        return lm_loss(self.lm, cap[hook], targets, frozen=frozen, chunk=self.chunk, denominator=denominator)

    def _logits_jobs(self, batch: Batch) -> list[tuple[str, Packed, str, float]]:
        jobs = [("lc", batch.lc_logits, self.lc_hook, self.w_lc)] if self.lc_signal == "logits" else []
        return jobs + ([("et", batch.et_logits, self.et_hook, self.w_et)] if self.et_signal == "logits" else [])

    def _records(self, batch: Batch) -> bool:
        """Whether the main pass keeps its keys/values for the logits passes (prefix reuse)."""
        return bool(self.reuse_prefix and self._logits_jobs(batch))

    # -- all together -------------------------------------------------------
    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``L_TFT + w_lc * L_LC + w_et * L_ET`` from :meth:`components`-style parts (absent terms count 0)."""
        loss = parts["tft"]
        if "lc" in parts:
            loss = loss + self.w_lc * parts["lc"]
        if "et" in parts:
            loss = loss + self.w_et * parts["et"]
        return loss

    def _english(self, batch: Batch, micro: int | None = None):
        if batch.english is None or not self.feature_pairs():
            return {}, None
        if (micro is not None and self.bank is not None and self.detach_english and not self._uses_stats()
                and not self.feature_pairs(("feature",))):
            return {}, None  # contrastive only: the step's bank already holds these states
        return self.english_states(batch.english), batch.english.pool_mask

    @property
    def contrastive(self) -> bool:
        """True when a signal is contrastive (the trainer then calls :meth:`prepare_step`)."""
        return "contrastive" in (self.lc_signal, self.et_signal)

    @torch.no_grad()
    def prepare_step(self, micro_batches: list[Batch], gather=None) -> CandidateBank | None:
        """Pool the English queries of a whole optimizer step: the contrastive candidates.

        One pass without gradient over each micro-batch's English query up to the contrastive
        signals' English-side hooks; the pooled rows [n, d] of all micro-batches, gathered over
        processes by ``gather`` (``[n, d] -> ([N, d] in process order, this process's first
        row)``, e.g. :meth:`~dftlens.dft.distributed.Runtime.gather_rows`; None: one process).
        Then ``backward(batch, micro=m)``/``components(batch, micro=m)`` score micro-batch ``m``'s
        anchors against every example of the step (:mod:`.contrastive_signal`). Returns the bank
        (also kept as ``self.bank``); None when no signal is contrastive.
        """
        hooks = sorted({en for _, en, _ in self.feature_pairs(("contrastive",))})
        self.bank = pool_step(self.lm, [b.english for b in micro_batches], hooks, self.raw_pool, gather) \
            if hooks else None
        return self.bank

    def components(self, batch: Batch, norm: dict[str, float] | None = None,
                   micro: int | None = None) -> dict[str, torch.Tensor]:
        """Every component with its graph (for tests and custom loops); ``loss`` is the weighted sum.

        ``micro``: the micro-batch's index in the step :meth:`prepare_step` pooled (contrastive).
        """
        norm = norm or {}
        parts, prefix = self.main_pass(batch.main, *self._english(batch, micro), norm=norm,
                                       record=self._records(batch), micro=micro)
        kv = prefix.pairs if prefix is not None else None
        for kind, packed, hook, _ in self._logits_jobs(batch):
            parts[kind] = self.logits_pass(packed, hook, kv, reusable(self.lm, batch.main, [packed]) if kv else None,
                                           norm.get(kind))
        parts["loss"] = self.total(parts)
        return parts
