"""The prompts and concept pairs of activation patching (Dumas et al. 2025, their code's choices).

Word-translation prompts (:func:`~dftlens.data.prompts.translation_items`), the prompt cut
right after the word (:func:`cut_at_word`) and the word's position (:func:`word_position`);
the (A, B) pairs whose answer-token sets do not collide, for concept patching
(:func:`concept_pairs`) and mean-latent patching (:func:`mean_pairs`).
"""

from __future__ import annotations

import random

from ..data.languages import native_name
from ..data.prompts import PromptItem, translation_items
from ..models import LensModel
from .patch_config import N_DEMOS
from .token_sets import TokenSets

def _tail(item: PromptItem) -> str:
    return f'" - {native_name(item.target_lang)}: "'


def cut_at_word(item: PromptItem) -> str:
    """The prompt ending right after the word to translate (their ``cut_at_obj``)."""
    return item.prompt[: -len(_tail(item))]


def word_position(lm: LensModel, item: PromptItem) -> int | None:
    """Negative position of the word's last token in the full prompt (their ``get_obj_id``).

    Found from the tokenizer's character offsets; None when the word's last token
    also covers the closing quote (the tokenizer merged them).
    """
    end = len(cut_at_word(item))  # character just after the word
    enc = lm.tokenizer(item.prompt, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    for i, (start, stop) in enumerate(offsets):
        if start < end <= stop:
            return i - len(offsets) if stop == end else None
    return None


def _items(words, pair: tuple[str, str], seed: int) -> dict[str, PromptItem]:
    return {it.item_id: it for it in translation_items(words, pair[0], pair[1], n_demos=N_DEMOS, seed=seed)}


def _collision_ids(token_sets: TokenSets):
    """The ids that decide whether two words collide: prefix sets leave byte-fallback tokens out
    (see :mod:`.token_sets`); first-token sets keep every id, as Dumas et al.'s
    ``has_no_collisions`` does."""
    return token_sets.ids if token_sets.kind == "first" else token_sets.ordinary_ids


def _union(ids, words) -> frozenset[int]:
    """The union of ``ids(word)`` over a concept's words (its synonyms, when the file lists them)."""
    return frozenset().union(*(ids(w) for w in words))


def concept_pairs(words, source: tuple[str, str], target: tuple[str, str], token_sets: TokenSets,
                  n_pairs: int, seed: int) -> list[dict]:
    """Up to ``n_pairs`` (A, B) pairs, A != B, whose four answer-token sets are disjoint
    (byte-fallback tokens aside for prefix sets). A set covers every synonym of the word when
    the words file lists them (Dumas et al.'s files), as their code does."""
    src, tgt = _items(words, source, seed), _items(words, target, seed)
    ids = list(words.ids)
    combos = [(a, b) for a in ids for b in ids if a != b]
    random.Random(f"{seed}-concept-{source}-{target}").shuffle(combos)
    key = _collision_ids(token_sets)
    pairs = []
    for a, b in combos:
        answers = [(a, target[1]), (a, source[1]), (b, target[1]), (b, source[1])]
        sets = [_union(token_sets.ids, words.words_of(c, lang)) for c, lang in answers]
        plain = [_union(key, words.words_of(c, lang)) for c, lang in answers]
        if any(not s for s in sets) or sum(len(s) for s in plain) != len(frozenset().union(*plain)):
            continue
        pairs.append({"a": a, "b": b, "source": src[a].prompt, "target": tgt[b].prompt, "sets": sets})
        if len(pairs) >= n_pairs:
            break
    return pairs


def mean_pairs(lm: LensModel, words, sources: list[tuple[str, str]], target: tuple[str, str],
               token_sets: TokenSets, n_pairs: int, seed: int) -> list[dict]:
    """Up to ``n_pairs`` (A, B) pairs for mean-latent patching (A's and B's Y' sets disjoint)."""
    src = [_items(words, pair, seed) for pair in sources]
    tgt = _items(words, target, seed)
    ids = list(words.ids)
    combos = [(a, b) for a in ids for b in ids if a != b]
    random.Random(f"{seed}-mean-{sources}-{target}").shuffle(combos)
    position: dict[str, int | None] = {}
    key = _collision_ids(token_sets)
    pairs = []
    for a, b in combos:
        sa, sb = (_union(token_sets.ids, words.words_of(c, target[1])) for c in (a, b))
        if not sa or not sb or _union(key, words.words_of(a, target[1])) & _union(key, words.words_of(b, target[1])):
            continue
        if b not in position:
            position[b] = word_position(lm, tgt[b])
        if position[b] is None:
            continue
        pairs.append({"a": a, "b": b, "sources": [cut_at_word(s[a]) for s in src], "target": tgt[b].prompt,
                      "own": tgt[a].prompt, "position": position[b], "sets": [sa, sb]})
        if len(pairs) >= n_pairs:
            break
    return pairs
