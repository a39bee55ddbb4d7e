"""Cross-entropy through the LM head, in chunks of positions.

A 262k-token vocabulary makes ``positions x vocab`` logits larger than the rest
of a training step. :func:`linear_cross_entropy` never holds more than ``chunk``
rows of logits: for each chunk it computes the logits, their log-sum-exp, the
loss and, when gradients are wanted, the gradients with respect to the hidden
states and the head weight straight away (the approach of Liger's fused linear
cross-entropy), so nothing of size vocab is kept for the backward pass except the
weight gradient itself. The logits are the lens kernel's
(:func:`dftlens.models.lens_kernel.project`: the head product in the weights' dtype, as the
model computes its logits, then float32, soft-cap ``c * tanh(z / c)`` included), so the
losses decode exactly as the logit lens does.
"""

from __future__ import annotations

import torch

from ..models.lens_kernel import project

# About this many float32 logits per chunk (256 MiB).
CHUNK_ELEMENTS = 1 << 26


def default_chunk(vocab_size: int) -> int:
    """Rows of logits per chunk: about :data:`CHUNK_ELEMENTS` float32 values (256 MiB), at least 16 rows."""
    return max(16, CHUNK_ELEMENTS // max(1, vocab_size))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, chunk, want):
        # ``want``: grad mode was on where the loss was called (it is off in here).
        need_h, need_w = hidden.requires_grad and want, weight.requires_grad and want
        need_b = bias is not None and bias.requires_grad and want
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = grad_b = None  # vocab-sized: created by the first chunk, never zero-filled
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start : start + chunk]
            t = targets[start : start + chunk]
            z = project(h, weight, bias, softcap)  # the lens kernel's logits (its dtype policy)
            lse = torch.logsumexp(z, dim=-1)
            total += (lse - z.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w or need_b:
                z_capped = z.clone() if softcap else None
                g = z.sub_(lse[:, None]).exp_()  # softmax, in place; d(nll)/dz = softmax - onehot
                g[torch.arange(len(t), device=g.device), t] -= 1
                if softcap:  # d(c tanh(x / c))/dx = 1 - tanh^2, with tanh = capped / c
                    tanh = z_capped.div_(softcap)
                    g = g.mul_(1 - tanh * tanh)
                g = g.to(weight.dtype)
                if need_h:
                    grad_h[start : start + chunk] = (g @ weight).to(hidden.dtype)
                if need_w:
                    part = g.T @ h.to(weight.dtype)
                    grad_w = part if grad_w is None else grad_w.add_(part)
                if need_b:
                    part = g.sum(0).to(bias.dtype)
                    grad_b = part if grad_b is None else grad_b.add_(part)
        # Kept as plain attributes (they are neither inputs nor outputs) so that backward
        # can hand them over without another reference: autograd may then add the
        # embedding's lookup gradient into the vocab-sized weight gradient in place.
        ctx.grads = (grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        # Scaled in place and released: the weight gradient is as large as the embedding
        # matrix, and a copy would be a third one in memory. Hence one backward only.
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("linear_cross_entropy does not support a second backward (retain_graph).")
        grad_h, grad_w, grad_b = (g.mul_(grad_out.to(g.dtype)) if g is not None else None for g in grads)
        del grads
        return grad_h, grad_w, grad_b, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    softcap: float | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Summed NLL of ``targets`` [n] under ``softcap(hidden @ weight.T + bias)``, [n, d] -> scalar.

    Pass ``weight.detach()`` for a frozen head: no weight gradient is computed.
    """
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    chunk = chunk or default_chunk(weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, bias, targets, softcap, chunk, torch.is_grad_enabled())
