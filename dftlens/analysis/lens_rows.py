"""The rows of the probe's per-item lens table (``lens_items.csv``), shared by the local
lens (:func:`.lens.measure`) and the in-trace one (:mod:`.lens_in_trace`)."""

from __future__ import annotations

import numpy as np

from ..data.prompts import PromptItem
from .token_sets import OVERLAP_POLICIES, TokenSets
from .writing_systems import SHARES, classify

# P(en) of the item under each overlap policy, from the same forward pass (NaN where that
# policy drops the item): the overlap-sensitivity line of the report.
POLICY_COLUMNS = [f"p_en_{policy}" for policy in OVERLAP_POLICIES]


def item_token_sets(token_sets: TokenSets, item: PromptItem, policy: str = "exclusive") -> list[frozenset[int]]:
    """The token sets whose masses one item's lens row needs, in this order: English, target,
    input word (empty without a separate input word) under ``policy``, then the English set
    under each of :data:`~dftlens.analysis.token_sets.OVERLAP_POLICIES` (empty where that
    policy drops the item; its column is then NaN)."""
    sets = token_sets.for_item(item, policy)
    alt = [token_sets.for_item(item, p) for p in OVERLAP_POLICIES]
    return [sets.en, sets.target, sets.input] + [a.en if a.kept else frozenset() for a in alt]


def lens_row(token_sets: TokenSets, item: PromptItem, layer: int, masses: list[float], entropy: float,
             top_ids: list[int], top_tokens: list[str], show_tokens: int = 3, policy: str = "exclusive") -> dict:
    """One row of the probe's lens table (``lens_items.csv``) for ``item`` at ``layer``.

    ``masses``: the probabilities of :func:`item_token_sets`'s sets in its order; ``top_ids``
    and ``top_tokens``: the layer's top-k token ids and vocabulary strings; the ``share_*``
    columns are the fractions of them in each class of :func:`~.writing_systems.classify`.
    ``p_input`` is NaN for an item without a separate input word; ``p_en_<policy>`` NaN
    where that policy drops the item.
    """
    sets = token_sets.for_item(item, policy)
    alt = [token_sets.for_item(item, p) for p in OVERLAP_POLICIES]
    track_input = item.input_lang not in ("en", item.target_lang)
    classes = [classify(token_sets.text(t), i, item.input_lang, item.target_lang, sets.en, sets.target, sets.input)
               for t, i in zip(top_tokens, top_ids)]
    k = max(1, len(top_ids))
    return {
        "task": item.task, "input_lang": item.input_lang, "target_lang": item.target_lang,
        "item_id": item.item_id, "layer": layer,
        "p_en": float(masses[0]), "p_target": float(masses[1]),
        "p_input": float(masses[2]) if track_input else np.nan,
        "entropy_bits": float(entropy),
        **{f"share_{c}": classes.count(c) / k for c in SHARES},
        **{col: float(m) if a.kept else np.nan for col, m, a in zip(POLICY_COLUMNS, masses[3:], alt)},
        "top_tokens": " ".join(top_tokens[:show_tokens]),
        "top1_target": bool(top_ids) and top_ids[0] in sets.target,
    }
