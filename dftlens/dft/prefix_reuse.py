"""Prefix reuse: run only what a pass does not share with the main pass.

The DFT logits sequences ``[tgt query, en query]`` (LC) and ``[tgt query, en
response]`` (ET) start with the target query that the main pass ``[tgt query,
tgt response]`` also runs. Each row's longest common token prefix with the same
row of the main pass (:func:`shared_prefix`) is run once; the other passes start
from its keys and values (``LensModel.run_prefix``, a
:class:`~dftlens.models.kv_prefix.KVPrefix`) and run only their own tokens
(:func:`continuation`). Rows whose prefixes differ in length see exactly their own
prefix: the cached slots past a row's prefix are masked, and the model interface
counts positions over the mask.

Used by :class:`~dftlens.dft.losses.DFTLoss`; the same idea as a prompt cache in
inference servers (vLLM's automatic prefix caching), with the gradient kept.
"""

from __future__ import annotations

import torch

from .batches import IGNORE, Packed


def shared_prefix(main: Packed, other: Packed) -> torch.Tensor:
    """How many leading positions of each row of ``other`` can take ``main``'s keys and values, ``[b]``.

    The longest common token prefix of the two rows, over real tokens, capped at
    the row's first loss position (the state there must come from ``other``'s own
    pass). 0: nothing to reuse in that row. ``shared_prefix(main, main)`` is each
    row's first loss position.
    """
    width = min(main.input_ids.shape[1], other.input_ids.shape[1])
    same = (main.input_ids[:, :width] == other.input_ids[:, :width])
    same &= main.attention_mask[:, :width].bool() & other.attention_mask[:, :width].bool()
    common = same.long().cumprod(1).sum(1)
    has_target = (other.targets != IGNORE).any(1)
    first = torch.where(has_target, (other.targets != IGNORE).long().argmax(1), common)
    return torch.minimum(common, first)


def reusable(lm, main: Packed, others: list[Packed]) -> torch.Tensor:
    """Per-row prefix lengths ``[b]`` that every pass in ``others`` takes from ``main``.

    The row-wise minimum of :func:`shared_prefix` over ``others``, except under a
    sliding-window attention (Gemma-2/3, Mistral) when the cached slots plus a
    pass's new tokens exceed the window: there a row's masked slots would count in
    the window's distance, so every row takes the shortest row's prefix (no masked
    slots; still exact).
    """
    lengths = torch.stack([shared_prefix(main, other) for other in others]).min(0).values
    window = getattr(lm.config, "sliding_window", None)
    if window and len(lengths):
        span = max(int((other.attention_mask.sum(1) - lengths).max()) for other in others)
        if int(lengths.max()) + span > window:
            lengths = torch.full_like(lengths, int(lengths.min()))
    return lengths


def continuation(packed: Packed, lengths: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The rows of ``packed`` after their first ``lengths[b]`` tokens, left-aligned: model inputs and targets.

    Returns ``({"input_ids", "attention_mask"}, targets)``: ``input_ids``/``targets``
    ``[b, w]`` (``w`` the longest remainder, right-padded, IGNORE off the loss) and an
    attention mask ``[b, P + w]`` over the ``P = max(lengths)`` cached positions
    (1 on each row's own first ``lengths[b]``, 0 on the slots after them, which
    hold the main pass's later tokens) and the new ones. The model interface
    counts positions over that mask, so row ``b``'s first new token sits at
    position ``lengths[b]``: each row sees exactly its own prefix.
    """
    real = packed.attention_mask.sum(1)
    span = int((real - lengths).max())
    index = lengths[:, None] + torch.arange(span, device=lengths.device)
    valid = index < real[:, None]
    index = index.clamp(max=packed.input_ids.shape[1] - 1)
    ids = torch.where(valid, packed.input_ids.gather(1, index), 0)  # masked: any id will do
    targets = torch.where(valid, packed.targets.gather(1, index), IGNORE)
    cached = torch.arange(int(lengths.max()), device=lengths.device) < lengths[:, None]
    mask = torch.cat([cached, valid], 1).to(packed.attention_mask.dtype)
    return {"input_ids": ids, "attention_mask": mask}, targets


def detached(kv: list, cached: int, blocks: int) -> list:
    """Leaf copies of the first ``cached`` positions of ``blocks`` blocks' keys/values (same ``requires_grad``)."""
    return [tuple(t[:, :, :cached].detach().requires_grad_(t.requires_grad) for t in pair) for pair in kv[:blocks]]


def hand_back(kv: list, leaves: list) -> tuple[list, list]:
    """(tensors, gradients) that carry the leaves' accumulated gradients into ``kv``'s graph."""
    tensors, grads = [], []
    for index, pair in enumerate(leaves):
        for which, leaf in enumerate(pair):
            if leaf.grad is not None:
                tensors.append(kv[index][which][:, :, : leaf.shape[2]])
                grads.append(leaf.grad)
    return tensors, grads
