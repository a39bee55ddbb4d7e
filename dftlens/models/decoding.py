"""The logit lens of a :class:`~dftlens.models.interface.LensModel`: final norm, LM head, soft-cap.

:class:`LogitLens` is a mixin of :class:`~dftlens.models.interface.LensModel` (its
``decode``/``unembed``/``logit_lens``, ``log_probs``, ``head_params``,
``final_norm`` and the chunk sizing of the lens); it reads ``hf_model``, ``arch``,
``lens_chunk``, ``dtype``, ``device`` and ``vocab_size`` of the model it is part of.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

_HEAD_SLICE = 32768  # vocabulary rows of the LM head upcast to float32 at a time


class LogitLens:
    """Decoding of residual states into float32 logits, as the model itself does it (see :meth:`decode`)."""

    def decode(self, resid: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """The logit lens, the one decode of a residual: float32 logits [..., vocab] from [..., d_model].

        The model's own final norm, LM head and logit soft-cap, computed in float32
        whatever the model's dtype (the residual and the norm/head parameters are
        upcast; the head one slice of the vocabulary at a time, so no float32 copy
        of the whole matrix is kept). ``frozen=True`` runs them with detached
        parameters, so a loss on these logits trains what produced ``resid`` but
        neither the norm nor the head; with tied embeddings the shared matrix
        keeps its gradient through the input lookup of the main loss.
        Used by the lens (analysis), the losses (``dft.losses``) and the held-out NLL.
        """
        normed = self.final_norm(resid, frozen)
        weight, bias = self.head_params(frozen)
        if weight.device.type == "meta":  # offloaded by a device map: let accelerate's hooks fetch it
            head = self.hf_model.get_output_embeddings()
            logits = head(normed.to(self.dtype)).float()
        else:
            normed = normed.to(weight.device)
            step = weight.shape[0] if weight.dtype == torch.float32 else _HEAD_SLICE
            parts = [F.linear(normed, weight[v:v + step].float(), None if bias is None else bias[v:v + step].float())
                     for v in range(0, weight.shape[0], step)]
            logits = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if self.arch.softcap:
            logits = torch.tanh(logits / self.arch.softcap) * self.arch.softcap
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
        return F.log_softmax(self.decode(resid), dim=-1)

    def lens_rows(self, budget_bytes: int | None = None) -> int:
        """Residual rows (layer x prompt) the lens decodes at once.

        ``lens_chunk`` when set; otherwise sized so that about four float32
        [rows, vocab] tensors (logits, log-probs, probs and a temporary) fit in
        ``budget_bytes`` (default: a quarter of the free GPU memory, at most
        2 GiB; 512 MiB on the CPU).
        """
        if self.lens_chunk:
            return int(self.lens_chunk)
        if budget_bytes is None:
            budget_bytes = 512 * 2**20
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                budget_bytes = min(2 * 2**30, free // 4)
        return max(1, int(budget_bytes // (4 * 4 * self.vocab_size)))

    def lens_layers_per_chunk(self, batch_rows: int) -> int:
        """Layers decoded together for a batch of ``batch_rows`` prompts (at least 1)."""
        return max(1, self.lens_rows() // max(1, batch_rows))

    def iter_log_probs(self, resid: torch.Tensor):
        """Yield ``(first_layer, log_probs [k, batch, vocab])`` over ``resid`` [layers, batch, d] in chunks."""
        step = self.lens_layers_per_chunk(resid.shape[1])
        for first in range(0, resid.shape[0], step):
            yield first, self.log_probs(resid[first:first + step])
