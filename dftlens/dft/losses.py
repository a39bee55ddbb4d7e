"""The DFT losses, exactly as ``docs/method.md`` states them.

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

``mean_q`` averages the formatted query's tokens, BOS excluded, padding excluded.
The English side runs without gradients unless ``detach_english=False``.

Cost: the target-side states of the feature losses come from the same forward
pass as ``L_TFT`` (one capture of [hook_i, hook_j, last block]); the English pass
has no gradient; the logits passes stop at layer i or j (``lm.capture`` stops
there); every cross-entropy goes through :mod:`.chunked_ce`. :meth:`DFTLoss.backward`
also runs the logits passes' backward before the main pass's.

Prefix reuse (``reuse_prefix=True``, the default): both logits sequences start
with the target query that the main pass already ran. The main pass records
every block's keys and values (a ``transformers`` cache passed to
``lm.capture`` as ``past_key_values``); each logits pass takes the longest common token
prefix of its rows and the main pass's rows (at most up to the last query token,
whose state the logits loss needs), and runs only the remaining tokens up to
layer i or j on top of those keys and values. The gradient through the prefix is
the same: in :meth:`DFTLoss.components` the reused keys/values keep their graph;
in :meth:`DFTLoss.backward` each logits pass backpropagates into detached copies
of them and their gradient is handed to the main pass's backward (so the main
graph is traversed once). Losses and gradients equal the full passes to float
rounding (tests/test_dft_losses.py).

Feature normalisation (``feature_norm``: none, center, standardize, rms) is
:mod:`.feature_signal` (its names are importable from here too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.hooks import parse_hook_name
from .batches import IGNORE, Batch, Packed
from .chunked_ce import linear_cross_entropy
from .feature_signal import (FEATURE_NORMS, RMS_EPS, RUNNING_MOMENTUM, STD_EPS, RunningStats,  # noqa: F401
                             cosine_loss, mean_pool, rms_normalise)

COMPONENTS = ("loss", "tft", "lc", "et")


def units(batch: Batch, lc: str, et: str) -> dict[str, float]:
    """What each component of ``batch`` averages over: loss tokens (NLL losses) or examples (feature losses)."""
    out = {"tft": float(batch.main.n_targets)}
    n_examples = float(batch.main.input_ids.shape[0])
    for kind, signal, packed in (("lc", lc, batch.lc_logits), ("et", et, batch.et_logits)):
        if signal == "logits":
            out[kind] = float(packed.n_targets)
        elif signal == "feature":
            out[kind] = n_examples
    return out


def step_norm(micro_batches: list[Batch], lc: str, et: str, reduce_sum=None) -> dict[str, float]:
    """Denominators of one optimizer step: the units of all its micro-batches (and processes).

    ``reduce_sum``: sums a dict of floats over processes (None: one process). With
    these, each micro-batch's loss is ``sum / step total``; summing micro-batches and
    processes gives exactly the loss (and gradient) of one big batch, whatever the
    split into micro-batches: token-mean losses weigh every token of the step alike,
    example-mean losses every example.
    """
    total: dict[str, float] = {}
    for batch in micro_batches:
        for k, v in units(batch, lc, et).items():
            total[k] = total.get(k, 0.0) + v
    if reduce_sum is not None:
        total = reduce_sum(total)
    return {k: max(v, 1.0) for k, v in total.items()}


def lm_loss(lm, resid: torch.Tensor, targets: torch.Tensor, frozen: bool, chunk: int | None = None,
            denominator: float | None = None) -> torch.Tensor:
    """NLL of ``targets`` [b, t] (IGNORE elsewhere) from residual states [b, t, d], summed / ``denominator``.

    ``denominator`` None: the number of loss tokens here (the mean). The logit lens
    as the model computes logits (final norm, head, soft-cap), only at the loss
    positions and in chunks. ``frozen``: no gradient into the norm or the head
    (with tied embeddings, the input lookup still trains the matrix).
    """
    keep = targets != IGNORE
    hidden = lm.final_norm(resid[keep], frozen)
    weight, bias = lm.head_params(frozen)  # the lens's own norm/head/soft-cap (LensModel.decode), fused with the CE
    total = linear_cross_entropy(hidden, weight, targets[keep], bias, lm.arch.softcap, chunk)
    return total / (denominator if denominator is not None else keep.sum().clamp(min=1))


def shared_prefix(main: Packed, other: Packed) -> int:
    """How many leading positions ``other`` can take from ``main``'s keys and values.

    The longest common token prefix of the two batches, row by row, over real
    tokens, capped at each row's first loss position (the state there must come
    from ``other``'s own pass); the minimum over rows. 0: nothing to reuse.
    """
    width = min(main.input_ids.shape[1], other.input_ids.shape[1])
    same = (main.input_ids[:, :width] == other.input_ids[:, :width])
    same &= main.attention_mask[:, :width].bool() & other.attention_mask[:, :width].bool()
    common = same.long().cumprod(1).sum(1)
    has_target = (other.targets != IGNORE).any(1)
    first = torch.where(has_target, (other.targets != IGNORE).long().argmax(1), common)
    return int(torch.minimum(common, first).min()) if len(common) else 0


@dataclass
class DFTLoss:
    """The DFT objective of Huo et al. (AAAI 2025): ``L = L_TFT + w_lc * L_LC + w_et * L_ET``.

    ``lm`` is a :class:`~dftlens.models.LensModel`; ``lc``/``et`` are ``"logits"``,
    ``"feature"`` or ``"off"``, attached at the hook names ``lc_hook``/``et_hook`` (from
    ``layers.json`` via :class:`~dftlens.layers.LayerChoice`). Every component is a mean in
    nats (cross-entropy, logits signals) or in ``1 - cos`` units (feature signals), as the
    module docstring states. :meth:`components` returns the scalar tensors ``tft``, ``lc``,
    ``et``, ``loss``; :meth:`backward` runs the passes' backward one after another and returns
    floats. Inputs: a :class:`~dftlens.dft.batches.Batch` of ``[b, t]`` token tensors.
    ``feature_norm`` (one of :data:`FEATURE_NORMS`) raises ValueError when unknown.
    """

    lm: object
    lc: str = "off"
    et: str = "off"
    lc_hook: str | None = None
    et_hook: str | None = None
    w_lc: float = 1.0
    w_et: float = 1.0
    detach_english: bool = True
    chunk: int | None = None
    feature_norm: str = "none"  # one of FEATURE_NORMS
    reuse_prefix: bool = True  # logits passes start from the main pass's keys/values

    def __post_init__(self) -> None:
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm must be one of {', '.join(FEATURE_NORMS)}, not {self.feature_norm!r}")
        self.stats = RunningStats()

    @property
    def last_hook(self) -> str:
        return self.lm.hook_name(self.lm.n_layers - 1)

    def feature_pairs(self) -> list[tuple[str, str, str]]:
        """(component, English-side hook, target-side hook) of each feature loss."""
        pairs = [("lc", self.lc_hook, self.lc_hook)] if self.lc == "feature" else []
        return pairs + ([("et", self.last_hook, self.et_hook)] if self.et == "feature" else [])

    def _uses_stats(self) -> bool:
        return self.feature_norm in ("center", "standardize")

    def pooled(self, states: torch.Tensor, mask: torch.Tensor, hook: str) -> torch.Tensor:
        """[b, t, d] -> [b, d]: the vector the cosine compares, under ``feature_norm``."""
        if self.feature_norm == "rms":
            return mean_pool(rms_normalise(states), mask)
        pooled = mean_pool(states, mask)
        if self.feature_norm == "none":
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
                  norm: dict[str, float] | None = None, cache=None, gnorms: dict | None = None
                  ) -> dict[str, torch.Tensor]:
        """L_TFT and the feature losses from one forward pass over [tgt query, tgt response].

        ``english``/``english_mask``: :meth:`english_states` and the English pool mask.
        ``norm``: each component's denominator (:func:`step_norm`); None: this batch's own mean.

        ``cache``: an empty ``transformers`` cache to record every block's keys and
        values in (for the logits passes). ``gnorms``: filled with
        ``<component>_gnorm``, the norm of the gradient of ``w * L`` with respect to
        the target-side residual states [b, t, d] at the loss's layer.
        """
        norm = norm or {}
        names = {self.last_hook} | {tgt for _, _, tgt in self.feature_pairs()}
        inputs = main.model_inputs() if cache is None else {**main.model_inputs(), "past_key_values": cache}
        cap = self.lm.capture(inputs, names, grad=True)
        out = {"tft": lm_loss(self.lm, cap[self.last_hook], main.targets, frozen=False, chunk=self.chunk,
                              denominator=norm.get("tft"))}
        if self._uses_stats():
            for hook in {h for _, en, tgt in self.feature_pairs() for h in (en, tgt)}:
                self.stats.update(hook, torch.cat([english[hook][english_mask], cap[hook][main.pool_mask]]))
        for kind, en_hook, tgt_hook in self.feature_pairs():
            out[kind] = cosine_loss(self.pooled(english[en_hook], english_mask, en_hook),
                                    self.pooled(cap[tgt_hook], main.pool_mask, tgt_hook), norm.get(kind))
            if gnorms is not None and out[kind].requires_grad:
                weight = self.w_lc if kind == "lc" else self.w_et
                (grad,) = torch.autograd.grad(weight * out[kind], cap[tgt_hook], retain_graph=True)
                gnorms[f"{kind}_gnorm"] = float(grad.float().norm())
        return out

    def logits_pass(self, packed: Packed, hook: str, prefix: list | None = None, length: int = 0,
                    denominator: float | None = None) -> torch.Tensor:
        """NLL of the English continuation from the frozen-lens logits at ``hook`` (stops there).

        ``prefix``: per block ``(keys, values)`` [b, kv_heads, >= length, head_dim]
        of the first ``length`` positions of ``packed`` (from the main pass); only
        the positions after them run.
        """
        if not prefix or length == 0:
            cap = self.lm.capture(packed.model_inputs(), [hook], grad=True)
            return lm_loss(self.lm, cap[hook], packed.targets, frozen=True, chunk=self.chunk, denominator=denominator)
        from transformers import DynamicCache

        layer = parse_hook_name(hook)[0]
        cache = DynamicCache()
        for index in range(layer + 1):
            keys, values = prefix[index]
            cache.update(keys[:, :, :length], values[:, :, :length], index)
        new = {"input_ids": packed.input_ids[:, length:], "attention_mask": packed.attention_mask,
               "past_key_values": cache}
        cap = self.lm.capture(new, [hook], grad=True)
        return lm_loss(self.lm, cap[hook], packed.targets[:, length:], frozen=True, chunk=self.chunk,
                       denominator=denominator)

    def _logits_jobs(self, batch: Batch) -> list[tuple[str, Packed, str, float]]:
        jobs = [("lc", batch.lc_logits, self.lc_hook, self.w_lc)] if self.lc == "logits" else []
        return jobs + ([("et", batch.et_logits, self.et_hook, self.w_et)] if self.et == "logits" else [])

    def _new_cache(self, batch: Batch):
        if not (self.reuse_prefix and self._logits_jobs(batch)):
            return None
        from transformers import DynamicCache

        return DynamicCache()

    # -- all together -------------------------------------------------------
    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = parts["tft"]
        if "lc" in parts:
            loss = loss + self.w_lc * parts["lc"]
        if "et" in parts:
            loss = loss + self.w_et * parts["et"]
        return loss

    def _english(self, batch: Batch):
        if batch.english is None or not self.feature_pairs():
            return {}, None
        return self.english_states(batch.english), batch.english.pool_mask

    def components(self, batch: Batch, norm: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """Every component with its graph (for tests and custom loops); ``loss`` is the weighted sum."""
        norm = norm or {}
        cache = self._new_cache(batch)
        parts = self.main_pass(batch.main, *self._english(batch), norm=norm, cache=cache)
        kv = [(layer.keys, layer.values) for layer in cache.layers] if cache is not None else None
        for kind, packed, hook, _ in self._logits_jobs(batch):
            parts[kind] = self.logits_pass(packed, hook, kv, shared_prefix(batch.main, packed) if kv else 0,
                                           norm.get(kind))
        parts["loss"] = self.total(parts)
        return parts

    def backward(self, batch: Batch, scale: float = 1.0, autocast=None,
                 norm: dict[str, float] | None = None) -> dict[str, float]:
        """Accumulate ``scale * d loss`` into the parameters' ``.grad``.

        Order: main forward (keys/values recorded), then each logits pass forward
        and backward on detached copies of the reused keys/values, then one
        backward through the main pass that also carries those copies' gradients.
        Returns the components as floats, and ``<kind>_gnorm`` for feature losses.
        Same gradients as ``components(batch, norm)["loss"].backward()``.
        ``norm``: the step's denominators (:func:`step_norm`); the returned values are
        then this micro-batch's share of the step's means (they add up over micro-batches).
        """
        from contextlib import nullcontext

        ctx = autocast or nullcontext
        norm = norm or {}
        gnorms: dict[str, float] = {}
        cache = self._new_cache(batch)
        with ctx():
            parts = self.main_pass(batch.main, *self._english(batch), norm=norm, cache=cache, gnorms=gnorms)
            main_total = self.total(parts)
        values = {k: float(v.detach()) for k, v in parts.items()}
        kv = [(layer.keys, layer.values) for layer in cache.layers] if cache is not None else None
        leaves = []
        for kind, packed, hook, weight in self._logits_jobs(batch):
            length = shared_prefix(batch.main, packed) if kv else 0
            prefix = None
            if length:
                n = parse_hook_name(hook)[0] + 1
                prefix = [tuple(t[:, :, :length].detach().requires_grad_(t.requires_grad) for t in pair)
                          for pair in kv[:n]]
                leaves.append(prefix)
            with ctx():
                part = self.logits_pass(packed, hook, prefix, length, norm.get(kind))
            (part * (weight * scale)).backward()
            values[kind] = float(part.detach())
        tensors, grads = [main_total * scale], [torch.ones_like(main_total)]
        for prefix in leaves:  # hand the reused keys'/values' gradients to the main pass
            for index, pair in enumerate(prefix):
                for which, leaf in enumerate(pair):
                    if leaf.grad is not None:
                        tensors.append(kv[index][which][:, :, : leaf.shape[2]])
                        grads.append(leaf.grad)
        torch.autograd.backward(tensors, grads)
        values["loss"] = values["tft"] + self.w_lc * values.get("lc", 0.0) + self.w_et * values.get("et", 0.0)
        values.update(gnorms)
        return values
