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
also runs each pass's backward before the next pass starts, so the activation
memory of a step is that of its largest pass, not of their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batches import IGNORE, Batch, Packed
from .chunked_ce import linear_cross_entropy

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


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(1).float() / mask.sum(1).float().clamp(min=1)


def cosine_loss(english: torch.Tensor, target: torch.Tensor, denominator: float | None = None) -> torch.Tensor:
    """``1 - cos`` of [b, d] pairs, summed over examples / ``denominator`` (None: the mean)."""
    per = 1 - F.cosine_similarity(english.float(), target.float(), dim=-1, eps=1e-8)
    return per.mean() if denominator is None else per.sum() / denominator


@dataclass
class DFTLoss:
    lm: object
    lc: str = "off"
    et: str = "off"
    lc_hook: str | None = None
    et_hook: str | None = None
    w_lc: float = 1.0
    w_et: float = 1.0
    detach_english: bool = True
    chunk: int | None = None

    @property
    def last_hook(self) -> str:
        return self.lm.hook_name(self.lm.n_layers - 1)

    # -- the passes ---------------------------------------------------------
    def english_states(self, english: Packed) -> dict[str, torch.Tensor]:
        """Pooled English-query states: layer i (LC feature) and the last block (ET feature)."""
        names = ([self.lc_hook] if self.lc == "feature" else []) + ([self.last_hook] if self.et == "feature" else [])
        if not names:
            return {}
        cap = self.lm.capture(english.model_inputs(), names, grad=not self.detach_english)
        return {n: mean_pool(cap[n], english.pool_mask) for n in names}

    def main_pass(self, main: Packed, english: dict[str, torch.Tensor],
                  norm: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """L_TFT and the feature losses from one forward pass over [tgt query, tgt response].

        ``norm``: each component's denominator (:func:`step_norm`); None: this batch's own mean.
        """
        norm = norm or {}
        names = [self.last_hook]
        names += [self.lc_hook] if self.lc == "feature" else []
        names += [self.et_hook] if self.et == "feature" else []
        cap = self.lm.capture(main.model_inputs(), names, grad=True)
        out = {"tft": lm_loss(self.lm, cap[self.last_hook], main.targets, frozen=False, chunk=self.chunk,
                              denominator=norm.get("tft"))}
        if self.lc == "feature":
            out["lc"] = cosine_loss(english[self.lc_hook], mean_pool(cap[self.lc_hook], main.pool_mask),
                                    norm.get("lc"))
        if self.et == "feature":
            out["et"] = cosine_loss(english[self.last_hook], mean_pool(cap[self.et_hook], main.pool_mask),
                                    norm.get("et"))
        return out

    def logits_pass(self, packed: Packed, hook: str, denominator: float | None = None) -> torch.Tensor:
        """NLL of the English continuation from the frozen-lens logits at ``hook`` (stops there)."""
        cap = self.lm.capture(packed.model_inputs(), [hook], grad=True)
        return lm_loss(self.lm, cap[hook], packed.targets, frozen=True, chunk=self.chunk, denominator=denominator)

    # -- all together -------------------------------------------------------
    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = parts["tft"]
        if "lc" in parts:
            loss = loss + self.w_lc * parts["lc"]
        if "et" in parts:
            loss = loss + self.w_et * parts["et"]
        return loss

    def components(self, batch: Batch, norm: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """Every component with its graph (for tests and custom loops); ``loss`` is the weighted sum."""
        norm = norm or {}
        parts = self.main_pass(batch.main, self.english_states(batch.english) if batch.english else {}, norm)
        if self.lc == "logits":
            parts["lc"] = self.logits_pass(batch.lc_logits, self.lc_hook, norm.get("lc"))
        if self.et == "logits":
            parts["et"] = self.logits_pass(batch.et_logits, self.et_hook, norm.get("et"))
        parts["loss"] = self.total(parts)
        return parts

    def backward(self, batch: Batch, scale: float = 1.0, autocast=None,
                 norm: dict[str, float] | None = None) -> dict[str, float]:
        """Accumulate ``scale * d loss`` into the parameters' ``.grad``, one pass at a time.

        Returns the components as floats. Same gradients as ``components(batch, norm)["loss"].backward()``.
        ``norm``: the step's denominators (:func:`step_norm`); the returned values are
        then this micro-batch's share of the step's means (they add up over micro-batches).
        """
        from contextlib import nullcontext

        ctx = autocast or nullcontext
        norm = norm or {}
        with ctx():
            english = self.english_states(batch.english) if batch.english else {}
            parts = self.main_pass(batch.main, english, norm)
            main_total = self.total(parts)
        (main_total * scale).backward()
        values = {k: float(v.detach()) for k, v in parts.items()}
        for kind, packed, hook, weight in (("lc", batch.lc_logits, self.lc_hook, self.w_lc),
                                            ("et", batch.et_logits, self.et_hook, self.w_et)):
            if getattr(self, kind) == "logits":
                with ctx():
                    part = self.logits_pass(packed, hook, norm.get(kind))
                (part * (weight * scale)).backward()
                values[kind] = float(part.detach())
        values["loss"] = values["tft"] + self.w_lc * values.get("lc", 0.0) + self.w_et * values.get("et", 0.0)
        return values
