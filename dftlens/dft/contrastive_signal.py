"""The contrastive signal of the DFT losses: InfoNCE between parallel queries' pooled states.

Follows Liu & Niehues, "Middle-Layer Representation Alignment for Cross-Lingual Transfer in
Fine-Tuned LLMs" (ACL 2025, arXiv 2502.14830; code dannigt/mid-align, ``modeling_llama.py``):
mean-pooled hidden states of parallel sentences at one layer, cosine similarities divided by a
temperature, and a cross-entropy whose positive is the parallel sentence and whose negatives
are the other examples' sentences. mid-align's unidirectional form detaches the other side;
here the English side is that side (``detach_english``, the default).

``--lc contrastive`` / ``--et contrastive`` use the hooks and pooling of the feature signal
(:mod:`.feature_signal`; ``feature_norm`` applies to both sides): the anchor of example ``e``
is ``a_e = pool(h_i(tgt query_e))`` (LC; ``h_j`` for ET) and the candidates are
``c_k = pool(h_i(en query_k))`` (LC; ``h_L``, the last block, for ET) for every example ``k``
of the candidate set. Per example

    ``loss_e = -log( exp(cos(a_e, c_e) / T) / sum_k exp(cos(a_e, c_k) / T) )``

in nats, and the component is ``sum_e loss_e / N`` with ``N`` the step's examples (as for the
feature signal). The candidate set (the negatives):

- in :meth:`~dftlens.dft.losses.DFTLoss.components`/``backward`` alone: the micro-batch's own
  examples (mid-align's in-batch negatives);
- in training (:meth:`~dftlens.dft.losses.DFTLoss.prepare_step`, called by the trainer once
  per optimizer step): every example of the optimizer step, all micro-batches of gradient
  accumulation and all data-parallel processes (their English pooled states are computed once
  without gradient and gathered). The loss value is then that of one batch of the whole step,
  whatever the split; with ``detach_english`` (the default) so are the gradients. With
  ``--no-detach-english`` the gradient reaches the English side only through the candidates of
  the example's own micro-batch (the others' are constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 0.1  # mid-align's scripts/train_with_alignment.sh (loss_temperature=0.1)


def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor, temperature: float,
             denominator: float | None = None) -> torch.Tensor:
    """InfoNCE of ``anchors`` [b, d] against ``candidates`` [n, d]; ``positives`` [b]: each anchor's row.

    ``-log softmax_k(cos(a, c_k) / temperature)[positive]`` per anchor (float32, cosine eps 1e-8
    as ``F.cosine_similarity``), summed / ``denominator`` (None: the mean over anchors). Nats.
    """
    a = F.normalize(anchors.float(), dim=-1, eps=1e-8)
    c = F.normalize(candidates.float(), dim=-1, eps=1e-8)
    logits = a @ c.T / temperature  # [b, n]
    per = -logits.log_softmax(dim=-1).gather(1, positives.view(-1, 1).to(logits.device)).squeeze(1)
    return per.mean() if denominator is None else per.sum() / denominator


@dataclass
class CandidateBank:
    """The English-side pooled states of one optimizer step (the contrastive candidates), detached.

    ``rows``: ``{hook: [N, d]}`` float32, every example of the step in (process, micro-batch,
    example) order; ``bounds``: this process's micro-batch ``m`` holds rows ``bounds[m]:bounds[m + 1]``.
    """

    rows: dict[str, torch.Tensor] = field(default_factory=dict)
    bounds: list[int] = field(default_factory=list)

    def candidates(self, hook: str, micro: int, own: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(candidates [N, d], positives [b])`` for micro-batch ``micro``; ``own`` [b, d] replaces its rows.

        ``own`` (the micro-batch's English states with their graph, ``--no-detach-english``)
        stands in for the bank's detached copy of the same rows, so the gradient reaches them.
        """
        bank = self.rows[hook]
        start, end = self.bounds[micro], self.bounds[micro + 1]
        if own is not None:
            bank = torch.cat([bank[:start], own.float(), bank[end:]])
        return bank, torch.arange(start, end, device=bank.device)


def candidate_rows(bank: CandidateBank | None, hook: str, micro: int | None, own: torch.Tensor | None,
                   detach_english: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(candidates [n, d], positives [b])`` of one micro-batch at ``hook``.

    ``bank`` (the step's, :func:`pool_step`) and ``micro`` given: every example of the step, with
    ``own`` (the micro-batch's English states with their graph) in place of its rows unless
    ``detach_english``. Otherwise the micro-batch's own examples ``own`` [b, d].
    """
    if bank is not None and micro is not None:
        return bank.candidates(hook, micro, None if detach_english else own)
    return own, torch.arange(len(own), device=own.device)


@torch.no_grad()
def pool_step(lm, english: list, hooks: list[str], pool, gather=None) -> CandidateBank:
    """The step's :class:`CandidateBank`: ``pool(states [b, t, d], mask [b, t]) -> [b, d]`` of each English pass.

    ``english``: the micro-batches' English-query :class:`~dftlens.data.packing.Packed` passes;
    one capture each without gradient, stopping at the last of ``hooks``. ``gather``: ``[n, k] ->
    ([N, k] rows of every process in rank order, this process's first row)`` (None: one process);
    the hooks' rows travel in one gather.
    """
    pooled: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for packed in english:
        cap = lm.capture(packed.model_inputs(), hooks, grad=False)
        for h in hooks:
            pooled[h].append(pool(cap[h], packed.pool_mask))
    sizes = [len(p) for p in pooled[hooks[0]]]
    local = torch.cat([torch.cat(pooled[h]) for h in hooks], dim=1)  # [n, d * hooks]
    rows, first = (local, 0) if gather is None else gather(local)
    bounds = [first + sum(sizes[:m]) for m in range(len(sizes) + 1)]
    return CandidateBank(dict(zip(hooks, rows.chunk(len(hooks), dim=1))), bounds)
