"""The logit lens of a :class:`~dftlens.models.interface.LensModel`: final norm, LM head, soft-cap.

:class:`LogitLens` is a mixin of :class:`~dftlens.models.interface.LensModel` (its
``decode``/``unembed``/``logit_lens``, ``log_probs``, ``lens_reduce``, ``head_params``,
``final_norm`` and the sizing of the lens's chunks); it reads ``hf_model``, ``arch``,
``lens_chunk``, ``device`` and ``vocab_size`` of the model it is part of. The
arithmetic and the dtype policy are :mod:`.lens_kernel`'s.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..numerics import check_logits
from .lens_kernel import LensReduction, RunningLens, project, reduce_logits

MIN_SLICE = 1024  # vocabulary columns decoded at once, at least (fewer rows are taken instead)
MAX_SLICE = 32768  # ... and at most (of 8k, 32k and the whole 262k vocabulary, the fastest on a 2-core CPU)
TEMPORARIES = 3  # float32 [rows, slice] blocks alive at once in a slice (the logits buffer, the exp buffer, top-k)


class LogitLens:
    """Decoding of residual states into float32 logits, as the model itself does it (see :meth:`decode`)."""

    def decode(self, resid: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """The logit lens, the one decode of a residual: float32 logits [..., vocab] from [..., d_model].

        The model's own final norm, LM head and logit soft-cap, under the dtype policy of
        :mod:`.lens_kernel` (norm in float32, head product in the head's dtype as the
        model computes its logits, float32 from the logits on). ``frozen=True`` runs them
        with detached parameters, so a loss on these logits trains what produced
        ``resid`` but neither the norm nor the head; with tied embeddings the shared
        matrix keeps its gradient through the input lookup of the main loss.
        Used by ``capture(lens=True)``, ``log_probs`` and the held-out NLL; the probe's
        lens uses :meth:`lens_reduce`, the losses :mod:`dftlens.dft.chunked_ce` (same kernel).
        Raises NonFiniteError (outside autograd) when the logits hold NaN or inf.
        """
        normed = self.final_norm(resid, frozen)
        weight, bias = self.head_params(frozen)
        if weight.device.type == "meta":  # offloaded by a device map: let accelerate's hooks fetch it
            head = self.hf_model.get_output_embeddings()
            logits, cap = head(normed.to(self.dtype)).float(), self.arch.softcap
            logits = torch.tanh(logits / cap) * cap if cap else logits
        else:
            logits = project(normed.to(weight.device), weight, bias, self.arch.softcap)
        if not torch.is_grad_enabled():  # analysis: NaN/inf stop the run (training checks its losses)
            check_logits(logits, self.name, self.dtype)
        return logits

    unembed = decode
    logit_lens = decode

    def head_params(self, frozen: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The LM head's (weight [vocab, d_model], bias [vocab] or None), detached when ``frozen``."""
        head = self.hf_model.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        if frozen:
            weight, bias = weight.detach(), bias.detach() if bias is not None else None
        return weight, bias

    def final_norm(self, resid: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """The model's own final norm, in float32 (parameters upcast; detached when ``frozen``)."""
        norm = self.hf_model.get_submodule(self.arch.norm_path)
        params = {name: (p.detach() if frozen else p) for name, p in norm.named_parameters()}
        params = {name: p.float() for name, p in params.items() if p.device.type != "meta"}
        if params:
            resid = resid.to(next(iter(params.values())).device)
        return functional_call(norm, params, (resid.float(),), strict=False).float()

    def log_probs(self, resid: torch.Tensor) -> torch.Tensor:
        """float32 log-softmax of the logit lens, [..., vocab]."""
        return torch.log_softmax(self.decode(resid), dim=-1)

    @torch.no_grad()
    def lens_reduce(self, resid: torch.Tensor, set_ids: torch.Tensor | None = None,
                    set_weights: torch.Tensor | None = None, top_k: int = 0) -> LensReduction:
        """The logit lens of ``resid`` [n, d] reduced in one pass, without full log-prob rows.

        Rows are decoded :meth:`lens_rows` at a time (all of them by default: the head is
        read once per call); for each group the head is read in vocabulary slices
        (:meth:`lens_slice` columns), each slice's logits folded into a
        :class:`~dftlens.models.lens_kernel.RunningLens` and dropped. ``set_ids`` /
        ``set_weights`` [n, S, K]: token sets whose probability mass to return (ids padded
        with weight 0); ``top_k``: how many top tokens. Returns a
        :class:`~dftlens.models.lens_kernel.LensReduction` (on the head's device). Equal to
        ``log_softmax(decode(resid))`` reduced directly, to float32 rounding
        (tests/models/test_lens_kernel.py). Raises NonFiniteError when a row's logits hold NaN or inf.
        """
        weight, bias = self.head_params(frozen=True)
        parts = []
        step = self.lens_rows()
        for start in range(0, resid.shape[0], step):
            rows = slice(start, start + step)
            ids = set_ids[rows] if set_ids is not None else None
            weights = set_weights[rows] if set_weights is not None else None
            if weight.device.type == "meta":
                parts.append(reduce_logits(self.decode(resid[rows]), ids, weights, top_k))
                continue
            normed = self.final_norm(resid[rows]).to(weight.device)
            run = RunningLens(normed.shape[0], weight.device, ids, weights, top_k)
            width = self.lens_slice(normed.shape[0])
            buffer = (torch.empty(normed.shape[0], width, device=weight.device)  # the logits of each slice
                      if weight.dtype == torch.float32 else None)
            for v in range(0, weight.shape[0], width):
                logits = project(normed, weight[v:v + width], None if bias is None else bias[v:v + width],
                                 self.arch.softcap, out=buffer)  # (not the narrower last slice)
                run.update(logits, v, scratch=True)
            parts.append(run.finish())
        out = parts[0] if len(parts) == 1 else \
            LensReduction(*(torch.cat([getattr(p, f) for p in parts]) for f in LensReduction.__dataclass_fields__))
        check_logits(out.lse, self.name, self.dtype)  # a row's log-sum-exp is finite iff its logits are
        return out

    def lens_memory(self) -> int:
        """Bytes the lens may use for its temporaries: an eighth of the memory free now.

        The GPU's free memory (``torch.cuda.mem_get_info``) on CUDA, otherwise the
        machine's available memory (``psutil.virtual_memory().available``).
        """
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
        else:
            import psutil

            free = psutil.virtual_memory().available
        return int(free) // 8

    def lens_rows(self, budget_bytes: int | None = None) -> int:
        """Residual rows (layer x prompt) the lens decodes at once.

        ``lens_chunk`` when set; otherwise as many rows as fit ``budget_bytes``
        (default :meth:`lens_memory`) with :data:`TEMPORARIES` float32 ``[rows, MIN_SLICE]``
        blocks, at least 1 (each group of rows reads the head once).
        """
        if self.lens_chunk:
            return int(self.lens_chunk)
        budget = self.lens_memory() if budget_bytes is None else budget_bytes
        return max(1, int(budget // (TEMPORARIES * 4 * min(MIN_SLICE, self.vocab_size))))

    def lens_slice(self, rows: int, budget_bytes: int | None = None) -> int:
        """Vocabulary columns decoded at once for ``rows`` rows: :data:`TEMPORARIES` float32
        ``[rows, columns]`` blocks within ``budget_bytes`` (default :meth:`lens_memory`),
        between :data:`MIN_SLICE` and :data:`MAX_SLICE` (and at most the vocabulary)."""
        budget = self.lens_memory() if budget_bytes is None else budget_bytes
        width = max(MIN_SLICE, min(MAX_SLICE, int(budget // (TEMPORARIES * 4 * max(1, rows)))))
        return min(width, self.vocab_size)
