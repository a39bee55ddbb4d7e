"""From texts to model inputs: the tokenizer's own BOS convention, the context length, position ids.

:class:`Tokenizing` is a mixin of :class:`~dftlens.models.interface.LensModel` (its
``tokenize``, ``model_inputs`` and ``context_length``); it reads ``tokenizer``, ``config``,
``arch``, ``device`` and ``name`` of the model it is part of.
"""

from __future__ import annotations

import torch

from ..errors import DataError
from .engine_protocol import position_ids_from_mask


class Tokenizing:
    """Texts -> ``{"input_ids", "attention_mask"}`` ``[b, t]`` on the model's device, checked against its context."""

    def tokenize(
        self,
        texts: list[str],
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
        labels: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Tokenise with the tokenizer's own BOS convention (added once, never twice).

        Without ``max_length`` (no truncation) every text must fit the model's context
        (:attr:`context_length`); ``labels`` name the texts in the error (e.g. ``item w3``).

        Raises:
            DataError: a text longer than the context, named by its label (or its number and end).
        """
        tok = self.tokenizer
        previous = tok.padding_side
        if padding_side:
            tok.padding_side = padding_side
        try:
            enc = tok(
                list(texts),
                return_tensors="pt",
                padding=True,
                add_special_tokens=add_special_tokens,
                truncation=max_length is not None,
                max_length=max_length,
            )
        finally:
            tok.padding_side = previous
        if max_length is None:
            self._check_context(enc["attention_mask"].sum(dim=1).tolist(), texts, labels)
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and, where the family takes them, position ids from the mask."""
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.arch.position_ids:
            inputs["position_ids"] = position_ids_from_mask(batch["attention_mask"])
        return inputs

    @property
    def context_length(self) -> int | None:
        """Longest input in tokens: ``max_position_embeddings`` (GPT-2's ``n_positions``); None if unbounded.

        Sliding-window attention does not shorten it (the window limits what a position sees,
        not how many positions there are).
        """
        config = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def _check_context(self, lengths: list[int], texts: list[str], labels: list[str] | None) -> None:
        limit = self.context_length
        if limit is None or max(lengths, default=0) <= limit:
            return
        i = next(i for i, n in enumerate(lengths) if n > limit)
        label = labels[i] if labels else f"text {i + 1} (ending {texts[i][-40:]!r})"
        raise DataError(f"{label} is {lengths[i]} tokens long, longer than the context of {self.name} "
                        f"({limit} tokens, max_position_embeddings); shorten it or leave it out.")
