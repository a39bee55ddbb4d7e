"""The one logit-lens kernel of dftlens: logits from normed states, and one pass over them.

Every decode of a residual state goes through here: the lens of ``dftlens probe`` and
``dftlens lens`` (:meth:`~dftlens.models.decoding.LogitLens.lens_reduce`), the
in-trace lens run on NDIF (:mod:`dftlens.analysis.lens_in_trace`), ``LensModel.decode``
and the losses' cross-entropy (:mod:`dftlens.dft.chunked_ce`), as nnterp's
``project_on_vocab`` and tuned-lens's ``Unembed`` are one function.

Dtype policy (one, for all of them): the final norm computes in float32 (its
parameters upcast), as the models' own RMSNorm/LayerNorm do inside; the head
product :func:`project` takes the normed state in the head's dtype and runs in it,
exactly as the model computes its own logits (and as tuned-lens, nnterp and
TransformerLens decode); its output is upcast to float32 at once, and everything from
there (the soft-cap ``c * tanh(z / c)``, log-sum-exp, probabilities, entropy, set
masses, top-k, NLL) is float32. On a float32 model the whole decode is float32. On a
bfloat16 model the logits carry the model's own bfloat16 rounding (about 3
significant digits: a logit of 20 is exact to 0.06 nats), and nothing else is rounded.

:class:`RunningLens` reduces ``[rows, vocab]`` logits given one slice of the vocabulary
at a time (online log-sum-exp, Milakov and Gimelshein 2018, "Online normalizer
calculation for softmax"), so the full rows of log-probabilities are never
materialised nor re-read; :func:`reduce_logits` runs it over logits already computed
(the in-trace lens), ``LensModel.lens_reduce`` over head slices it computes itself
(the head read once per call).

This module imports only torch (and the standard library) so that
``nnsight.register`` can ship it to NDIF by value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


def project(normed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            softcap: float | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """float32 logits ``[n, V']`` of normed states ``[n, d]`` through head rows ``weight`` ``[V', d]``.

    The product runs in ``weight``'s dtype (the model's own), its result is upcast to
    float32, then the soft-cap ``softcap * tanh(z / softcap)`` (Gemma-2) applies in float32.
    ``weight``/``bias`` may be a slice of the vocabulary. ``out``: a contiguous float32
    ``[n, V']`` buffer to write the logits into when the head is float32 and no autograd
    is recorded (the lens reuses one per call instead of allocating, and page-faulting,
    a fresh block per vocabulary slice); ignored otherwise.
    """
    normed = normed.to(weight.dtype)
    if (out is not None and weight.dtype == torch.float32 and out.shape == (normed.shape[0], weight.shape[0])
            and not (torch.is_grad_enabled() and (normed.requires_grad or weight.requires_grad))):
        logits = (torch.mm(normed, weight.t(), out=out) if bias is None
                  else torch.addmm(bias, normed, weight.t(), out=out))
        if softcap:
            logits.div_(softcap).tanh_().mul_(softcap)
        return logits
    return cap_logits(F.linear(normed, weight, bias).float(), softcap)


def cap_logits(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """The final logit soft-cap ``softcap * tanh(logits / softcap)`` (Gemma-2; None or 0: none), any shape."""
    return torch.tanh(logits / softcap) * softcap if softcap else logits


@dataclass
class LensReduction:
    """What the lens keeps of each decoded row (``n`` rows; everything float32 except ids).

    - ``lse`` [n]: log-sum-exp of the logits (nats): ``log p(v) = z_v - lse``.
    - ``entropy_bits`` [n]: Shannon entropy of the lens distribution, bits.
    - ``masses`` [n, S]: probability of each of ``S`` token sets (0 when no sets were given: S = 0).
    - ``top_ids`` [n, k] (long) and ``top_log_probs`` [n, k] (nats): the ``k`` most probable
      tokens, most probable first.
    """

    lse: torch.Tensor
    entropy_bits: torch.Tensor
    masses: torch.Tensor
    top_ids: torch.Tensor
    top_log_probs: torch.Tensor


class RunningLens:
    """One pass over ``[n, V]`` float32 logits given as vocabulary slices, left to right.

    Keeps per row the running maximum ``m``, ``s = sum exp(z - m)`` and
    ``u = sum exp(z - m) (z - m)`` (so entropy = ``log s - u / s`` nats, with no
    cancellation), the logits of the token-set ids and a running top-k. ``set_ids`` /
    ``set_weights``: ``[n, S, K]`` token ids of ``S`` sets per row, padded with weight 0
    (ids must be in ``[0, V)``). Every logit is read once, by :meth:`update`.
    """

    def __init__(self, n: int, device: torch.device | str, set_ids: torch.Tensor | None = None,
                 set_weights: torch.Tensor | None = None, top_k: int = 0) -> None:
        """An empty reduction of ``n`` rows on ``device`` (see the class docstring for the sets)."""
        self.n, self.top_k = n, top_k
        self.m = self.s = self.u = None
        self.shape = tuple(set_ids.shape[1:]) if set_ids is not None else (0, 1)
        self.ids = (set_ids.reshape(n, -1).to(device) if set_ids is not None
                    else torch.zeros(n, 0, dtype=torch.long, device=device))
        self.weights = (set_weights.reshape(n, -1).to(device=device, dtype=torch.float32)
                        if set_weights is not None else torch.zeros(n, 0, device=device))
        self.set_logits = torch.full(self.ids.shape, -math.inf, device=device)
        self.top_values = torch.empty(n, 0, device=device)
        self.top_ids = torch.empty(n, 0, dtype=torch.long, device=device)
        self._exp: torch.Tensor | None = None  # the reused exp buffer of update()

    def update(self, logits: torch.Tensor, offset: int, scratch: bool = False) -> None:
        """Fold in ``logits`` [n, V'] float32, the vocabulary ids ``offset .. offset + V' - 1``.

        ``scratch=True``: ``logits`` is a temporary the caller drops (or refills) afterwards,
        so it is shifted in place; otherwise it is left as it was. Either way the pass
        allocates no ``[n, V']`` block beyond one reused buffer (for ``exp``): allocating
        one per slice costs page faults that, on a CPU, take longer than the arithmetic.
        """
        width = logits.shape[1]
        if self.top_k:  # the slice's top-k, sorted: its first value is the slice's maximum (no amax pass)
            values, ids = logits.topk(min(self.top_k, width), dim=1)
            peak = values[:, 0]
            values = torch.cat([self.top_values, values], dim=1)
            ids = torch.cat([self.top_ids, ids + offset], dim=1)
            keep = values.topk(min(self.top_k, values.shape[1]), dim=1).indices
            self.top_values, self.top_ids = values.gather(1, keep), ids.gather(1, keep)
        else:
            peak = logits.amax(dim=1)
        m = peak if self.m is None else torch.maximum(self.m, peak)
        if self.ids.shape[1]:
            local = self.ids - offset
            inside = (local >= 0) & (local < width)
            picked = logits.gather(1, local.clamp(0, width - 1))
            self.set_logits = torch.where(inside, picked, self.set_logits)
        shifted = logits.sub_(m[:, None]) if scratch else logits - m[:, None]
        if self._exp is None or self._exp.shape != shifted.shape:
            self._exp = torch.empty_like(shifted)
        e = torch.exp(shifted, out=self._exp)
        s_part = e.sum(dim=1)
        u_part = e.mul_(shifted).sum(dim=1)  # sum exp(z - m) (z - m), in the buffer (s_part is taken)
        if self.m is None:
            self.s, self.u = s_part, u_part
        else:  # rescale what came before to the new maximum
            delta = self.m - m  # <= 0
            scale = torch.exp(delta)
            self.s, self.u = self.s * scale + s_part, (self.u + delta * self.s) * scale + u_part
        self.m = m

    def finish(self) -> LensReduction:
        """The reduction of everything folded in (raises ValueError when nothing was)."""
        if self.m is None:
            raise ValueError("RunningLens.finish() before any update()")
        lse = self.m + self.s.log()
        entropy = (self.s.log() - self.u / self.s) / LOG2
        masses = ((self.set_logits - lse[:, None]).exp() * self.weights)
        masses = masses.reshape(self.n, *self.shape).sum(-1)
        return LensReduction(lse, entropy, masses, self.top_ids, self.top_values - lse[:, None])


def reduce_logits(logits: torch.Tensor, set_ids: torch.Tensor | None = None,
                  set_weights: torch.Tensor | None = None, top_k: int = 0,
                  slice_size: int | None = None) -> LensReduction:
    """:class:`LensReduction` of float32 logits ``[n, V]`` already computed (the in-trace lens).

    ``slice_size``: vocabulary columns folded at a time (None: all at once).
    """
    run = RunningLens(logits.shape[0], logits.device, set_ids, set_weights, top_k)
    step = slice_size or logits.shape[1]
    for start in range(0, logits.shape[1], step):
        run.update(logits[:, start:start + step], start)
    return run.finish()
