"""Padded tensors for one micro-batch of encoded instruction pairs.

Every sequence is right-padded; positions come from the attention mask (the
model interface computes them), so padding never shifts a token. ``targets[b, t]``
is the token that position ``t`` must predict, or -100 where no loss is taken:
the loss positions of a teacher-forced ``[prefix, continuation]`` sequence are
``len(prefix) - 1 .. len(prefix) + len(continuation) - 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.instructions import EncodedPair

IGNORE = -100


@dataclass
class Packed:
    input_ids: torch.Tensor  # [batch, len]
    attention_mask: torch.Tensor  # [batch, len]
    targets: torch.Tensor  # [batch, len] next-token targets, IGNORE off the continuation
    pool_mask: torch.Tensor  # [batch, len] the prefix (query) tokens, BOS excluded

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def to(self, device) -> "Packed":
        return Packed(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.targets, self.pool_mask)))


def pack(prefixes: list[list[int]], continuations: list[list[int]], pad_id: int, bos_id: int | None) -> Packed:
    """Right-padded ``prefix + continuation`` rows; the loss is on the continuation."""
    rows = [p + c for p, c in zip(prefixes, continuations)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, IGNORE)
    pool = torch.zeros_like(ids, dtype=torch.bool)
    for b, (prefix, cont) in enumerate(zip(prefixes, continuations)):
        row = prefix + cont
        ids[b, : len(row)] = torch.tensor(row)
        mask[b, : len(row)] = 1
        if cont:
            start = len(prefix) - 1
            targets[b, start : start + len(cont)] = torch.tensor(cont)
        first = 1 if bos_id is not None and prefix and prefix[0] == bos_id and len(prefix) > 1 else 0
        pool[b, first : len(prefix)] = True
    return Packed(ids, mask, targets, pool)


@dataclass
class Batch:
    """What one DFT step needs; a pass is built only if a loss uses it."""

    main: Packed  # [tgt query, tgt response]: L_TFT, and the target side of the feature losses
    english: Packed | None  # [en query]: the English side of the feature losses
    lc_logits: Packed | None  # [tgt query, en query]
    et_logits: Packed | None  # [tgt query, en response]

    def to(self, device) -> "Batch":
        parts = (self.main, self.english, self.lc_logits, self.et_logits)
        return Batch(*(p.to(device) if p is not None else None for p in parts))


def collate(pairs: list[EncodedPair], lc: str, et: str, pad_id: int, bos_id: int | None) -> Batch:
    prompts = [p.tgt_prompt for p in pairs]
    main = pack(prompts, [p.tgt_response for p in pairs], pad_id, bos_id)
    english = None
    if "feature" in (lc, et):
        english = pack([p.en_prompt for p in pairs], [[] for _ in pairs], pad_id, bos_id)
    lc_batch = pack(prompts, [p.en_query for p in pairs], pad_id, bos_id) if lc == "logits" else None
    et_batch = pack(prompts, [p.en_response for p in pairs], pad_id, bos_id) if et == "logits" else None
    return Batch(main, english, lc_batch, et_batch)
