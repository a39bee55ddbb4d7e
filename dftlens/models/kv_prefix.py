"""Run a prefix once, continue from its keys and values: the model interface's prefix reuse.

:meth:`LensModel.run_prefix <dftlens.models.interface.LensModel.run_prefix>` runs a batch
through every block once and returns, with the activations it captured, a :class:`KVPrefix`:
each block's keys and values (a ``transformers`` ``DynamicCache``). A later
:meth:`~dftlens.models.interface.LensModel.capture` or ``intervene`` runs only the new tokens,
on :meth:`KVPrefix.extend`'s batch, and attends to the cached positions as if they had run in
the same pass (the interface counts positions over the mask, so each row continues at its own
position). The same idea as a prompt cache in inference servers (vLLM's automatic prefix
caching), with the gradient kept when the prefix ran with ``grad=True``.

Two users: activation patching (:func:`dftlens.analysis.patch_sweep.patch_sweep`: a prompt's
rows share every token before the first patched position) and the DFT losses
(:mod:`dftlens.dft.prefix_reuse`: the logits passes share the target query with the main pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KVPairs = list[tuple[torch.Tensor, torch.Tensor]]  # per block (keys, values) [b, kv_heads, P, head_dim]


@dataclass
class KVPrefix:
    """Every block's keys and values for the first ``P`` positions of a batch of ``b`` rows.

    ``cache``: a ``transformers.DynamicCache`` holding full layers (every position kept,
    also under a sliding window, so that :meth:`from_pairs` can cut a prefix at any length).
    One continuation appends its own keys/values to the cache, so a :class:`KVPrefix` serves
    one continuation; :meth:`from_pairs` builds another from :attr:`pairs`.
    """

    cache: object

    @classmethod
    def empty(cls) -> "KVPrefix":
        """A prefix with nothing cached yet, for a pass to record into (``batch["past_key_values"]``)."""
        from transformers import DynamicCache

        return cls(DynamicCache())

    @classmethod
    def from_pairs(cls, pairs: KVPairs, length: int, blocks: int | None = None) -> "KVPrefix":
        """The first ``length`` positions of the first ``blocks`` blocks of ``pairs`` (default: all).

        ``pairs``: per block ``(keys, values)`` ``[b, kv_heads, >= length, head_dim]`` (e.g.
        :attr:`pairs` of another prefix, or leaf copies of them); they are sliced, not copied,
        and never modified (a continuation appends to new tensors). A continuation through
        more than ``blocks`` blocks has no keys/values above them: stop it at block
        ``blocks - 1``.
        """
        from transformers import DynamicCache

        cache = DynamicCache()
        for index, (keys, values) in enumerate(pairs[: len(pairs) if blocks is None else blocks]):
            cache.update(keys[:, :, :length], values[:, :, :length], index)
        return cls(cache)

    @property
    def pairs(self) -> KVPairs:
        """Per block ``(keys, values)``, ``[b, kv_heads, P, head_dim]`` in the model's dtype (graph kept)."""
        return [(layer.keys, layer.values) for layer in self.cache.layers]

    @property
    def length(self) -> int:
        """``P``: how many positions are cached (0 when empty)."""
        return int(self.cache.get_seq_length())

    def repeat_rows(self, repeats: int) -> "KVPrefix":
        """Each row ``repeats`` times in a row (as ``repeat_interleave(repeats, dim=0)``), in place; returns self."""
        self.cache.batch_repeat_interleave(repeats)
        return self

    def extend(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch that continues this prefix: ``batch`` plus the cache as ``past_key_values``.

        ``batch``: ``input_ids`` ``[b, n]`` (the new tokens only) and ``attention_mask``
        ``[b, P + n]`` over the cached and the new positions (0 on cached slots a row must
        not see). Pass the result to :meth:`~dftlens.models.interface.LensModel.capture` or
        ``intervene``; positions and edits there refer to the ``n`` new tokens.
        """
        return {**batch, "past_key_values": self.cache}


__all__ = ["KVPairs", "KVPrefix"]
