"""The rows of the probe's per-item lens table (``lens_items.csv``), shared by the local
lens (:func:`.lens.measure`) and the in-trace one (:mod:`.lens_in_trace`)."""

from __future__ import annotations

import numpy as np
import torch

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


def pad_sets(sets_per_row: list[list[frozenset[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and weights ``[rows, S, K]`` (long / float32) of ``S`` id sets per row, each
    sorted and padded to the longest set ``K`` (at least 1) with id 0 and weight 0 (an empty set
    has mass 0): the input of the lens kernel's set masses
    (:class:`~dftlens.models.lens_kernel.RunningLens`)."""
    sets = [[sorted(s) for s in row] for row in sets_per_row]
    n_sets = max((len(row) for row in sets), default=0)
    width = max([1] + [len(s) for row in sets for s in row])
    ids = torch.zeros(len(sets), n_sets, width, dtype=torch.long)
    weights = torch.zeros(len(sets), n_sets, width)
    for r, row in enumerate(sets):
        for j, s in enumerate(row):
            ids[r, j, :len(s)] = torch.tensor(s, dtype=torch.long)
            weights[r, j, :len(s)] = 1.0
    return ids, weights


def item_set_tensors(token_sets: TokenSets, items: list[PromptItem], policy: str = "exclusive"):
    """:func:`pad_sets` of each item's :func:`item_token_sets`: ``[items, S, K]`` ids and weights."""
    return pad_sets([item_token_sets(token_sets, item, policy) for item in items])


def batch_rows(tokenizer, items: list[PromptItem], stats: torch.Tensor, top_ids: torch.Tensor,
               token_sets: TokenSets, show_tokens: int = 3, policy: str = "exclusive") -> list[dict]:
    """:func:`lens_row` for every item and layer of one batch, from ``stats`` [layers, batch, S + 1]
    (the masses of :func:`item_token_sets`'s ``S`` sets, then the entropy in bits) and ``top_ids``
    [layers, batch, k]; ``tokenizer`` turns ids into vocabulary strings."""
    stats_list, top_list = stats.tolist(), top_ids.tolist()
    out = []
    for b, item in enumerate(items):
        for layer in range(len(stats_list)):
            ids, values = top_list[layer][b], stats_list[layer][b]
            out.append(lens_row(token_sets, item, layer, values[:-1], values[-1], ids,
                                tokenizer.convert_ids_to_tokens(ids), show_tokens, policy))
    return out
