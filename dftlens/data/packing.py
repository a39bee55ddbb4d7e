"""Padded tensors of token rows whose loss is on a continuation: one forward pass's inputs.

Every sequence is right-padded; positions come from the attention mask (the
model interface computes them), so padding never shifts a token. ``targets[b, t]``
is the token that position ``t`` must predict, or -100 where no loss is taken:
the loss positions of a sequence whose first ``prefix`` tokens are the prompt are
``prefix - 1 .. len - 2``. Each row is one text tokenised once
(:class:`~dftlens.data.instructions.Segmented`), never pieces joined by id.
Used by DFT training (:mod:`dftlens.dft.batches`) and the held-out NLL
(:mod:`dftlens.evaluation.heldout`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .instructions import Segmented

IGNORE = -100


@dataclass
class Packed:
    """One padded pass. Shapes: ``[batch, len]`` except ``prefix_len``/``shared`` ``[batch]``."""

    input_ids: torch.Tensor  # [batch, len]
    attention_mask: torch.Tensor  # [batch, len]
    targets: torch.Tensor  # [batch, len] next-token targets, IGNORE off the continuation
    pool_mask: torch.Tensor  # [batch, len] the prefix (query) tokens, BOS excluded
    prefix_len: torch.Tensor  # [batch] tokens wholly inside the prefix text (BOS included)
    shared: torch.Tensor  # [batch] leading tokens equal to the same row of the main pass

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask``, the batch :meth:`LensModel.capture` takes."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def to(self, device) -> "Packed":
        """The same tensors on ``device``."""
        return Packed(*(getattr(self, f.name).to(device) for f in fields(self)))

    def labels(self) -> torch.Tensor:
        """Hugging Face ``labels`` [batch, len]: the token itself where it is predicted, else -100."""
        labels = torch.full_like(self.targets, IGNORE)
        labels[:, 1:] = self.targets[:, :-1]
        return labels

    @property
    def n_targets(self) -> int:
        """Loss positions in the batch (targets that are not IGNORE)."""
        return int((self.targets != IGNORE).sum())


def pack(rows: list[Segmented], pad_id: int, bos_id: int | None) -> Packed:
    """Right-padded rows; the loss is on each row's continuation ``ids[prefix:]``."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, IGNORE)
    pool = torch.zeros_like(ids, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row.ids)] = torch.tensor(row.ids)
        mask[b, : len(row.ids)] = 1
        cont = row.continuation
        if cont:
            start = row.prefix - 1
            targets[b, start : start + len(cont)] = torch.tensor(cont)
        first = 1 if bos_id is not None and row.prefix > 1 and row.ids[0] == bos_id else 0
        pool[b, first : row.prefix] = True
    prefix = torch.tensor([r.prefix for r in rows])
    shared = torch.tensor([r.shared for r in rows])
    return Packed(ids, mask, targets, pool, prefix, shared)
