"""The per-term pieces of the DFT losses: what each component averages over, and the lens NLL.

:func:`units`/:func:`step_norm` give each component's denominator (loss tokens for
the NLL losses, examples for the pooled-state losses), so that gradient accumulation
and data parallelism reproduce one big batch's means (tests/dft/test_dft_accumulation.py).
:func:`lm_loss` is the logit-lens NLL every cross-entropy of :class:`~dftlens.dft.losses.DFTLoss`
goes through (:mod:`.chunked_ce`). The method: docs/method/dft-losses.md.
"""

from __future__ import annotations

import torch

from .batches import IGNORE, Batch
from .chunked_ce import linear_cross_entropy


def units(batch: Batch, lc_signal: str, et_signal: str) -> dict[str, float]:
    """What each component of ``batch`` averages over: loss tokens (NLL losses) or examples (feature losses)."""
    out = {"tft": float(batch.main.n_targets)}
    n_examples = float(batch.main.input_ids.shape[0])
    for kind, signal, packed in (("lc", lc_signal, batch.lc_logits), ("et", et_signal, batch.et_logits)):
        if signal == "logits":
            out[kind] = float(packed.n_targets)
        elif signal in ("feature", "contrastive"):
            out[kind] = n_examples
    return out


def step_norm(micro_batches: list[Batch], lc_signal: str, et_signal: str, reduce_sum=None) -> dict[str, float]:
    """Denominators of one optimizer step: the units of all its micro-batches (and processes).

    ``reduce_sum``: sums a dict of floats over processes (None: one process). With
    these, each micro-batch's loss is ``sum / step total``; summing micro-batches and
    processes gives exactly the loss (and gradient) of one big batch, whatever the
    split into micro-batches: token-mean losses weigh every token of the step alike,
    example-mean losses every example.
    """
    total: dict[str, float] = {}
    for batch in micro_batches:
        for k, v in units(batch, lc_signal, et_signal).items():
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
