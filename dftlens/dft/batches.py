"""One DFT micro-batch: the padded passes (:mod:`dftlens.data.packing`) each loss needs.

:func:`collate` packs the main pass (target query + response) and, only when a
loss uses them, the English query pass (feature losses) and the LC/ET logits
passes (target query + English query / response).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.instructions import EncodedPair
from ..data.packing import IGNORE, Packed, pack

__all__ = ["IGNORE", "Batch", "Packed", "collate", "pack"]


@dataclass
class Batch:
    """What one DFT step needs; a pass is built only if a loss uses it."""

    main: Packed  # [tgt query, tgt response]: L_TFT, and the target side of the feature losses
    english: Packed | None  # [en query]: the English side of the feature and contrastive losses
    lc_logits: Packed | None  # [tgt query, en query]
    et_logits: Packed | None  # [tgt query, en response]

    def to(self, device) -> "Batch":
        """The same passes moved to ``device`` (absent passes stay None)."""
        parts = (self.main, self.english, self.lc_logits, self.et_logits)
        return Batch(*(p.to(device) if p is not None else None for p in parts))


def collate(pairs: list[EncodedPair], lc_signal: str, et_signal: str, pad_id: int, bos_id: int | None) -> Batch:
    """Pad one micro-batch of examples into the passes the losses need (:class:`Batch`).

    ``lc_signal``/``et_signal``: each signal's loss kind (``"feature"``, ``"contrastive"``, ``"logits"`` or
    ``"off"``); the English pass is built when either is ``"feature"`` or ``"contrastive"``, the LC/ET logits
    passes when that signal is ``"logits"``. ``pad_id`` fills the padding, ``bos_id`` is passed on to :func:`pack`.
    """
    main = pack([p.main for p in pairs], pad_id, bos_id)
    pooled = {"feature", "contrastive"} & {lc_signal, et_signal}
    english = pack([p.english for p in pairs], pad_id, bos_id) if pooled else None
    lc_batch = pack([p.lc for p in pairs], pad_id, bos_id) if lc_signal == "logits" else None
    et_batch = pack([p.et for p in pairs], pad_id, bos_id) if et_signal == "logits" else None
    return Batch(main, english, lc_batch, et_batch)
