"""Mean-pooled sentence residuals at every layer: the input of the linear probes.

Pooling: the mean over a sentence's real tokens (attention mask), *excluding the
BOS token* when the tokenizer adds one: BOS carries a residual norm an order of
magnitude above the other tokens in many models (about 43k vs 3k in Gemma-3-270M)
and would otherwise dominate every sentence mean with a sentence-independent
vector. :func:`sentence_representations` runs the model once per batch for all
layers; the probes (:mod:`.lang_id`, :mod:`.retrieval`) work on its numpy output.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from ..errors import DataError


class SentenceReps(NamedTuple):
    """Mean-pooled residuals and what they index.

    ``reps``: float32 ``[n_langs, n_sentences, n_layers, d]``; ``langs``: the
    language order of axis 0; ``layers``: the block index of each entry on axis 2;
    ``token_ids``: ``[lang][sentence]`` the pooled token ids (BOS and pads removed),
    which the control task needs.
    """

    reps: np.ndarray
    langs: list[str]
    layers: list[int]
    token_ids: list[list[list[int]]]


def check_sentences(sentences: dict[str, Sequence[str]]) -> tuple[list[str], int]:
    """The languages and the number of sentences per language; DataError if they are not parallel and non-empty."""
    if not sentences:
        raise DataError("No sentences given: pass at least one language with a list of sentences.")
    langs = list(sentences)
    lengths = {lang: len(sentences[lang]) for lang in langs}
    n = lengths[langs[0]]
    if len(set(lengths.values())) != 1:
        raise DataError(f"Parallel sentences must have the same number per language; got {lengths}.")
    if n == 0:
        raise DataError("The sentence lists are empty.")
    for lang in langs:
        for i, text in enumerate(sentences[lang]):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"Sentence {i} of language {lang!r} is empty or not a string.")
    return langs, n


def pooling_weights(input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_token_id: int | None) -> torch.Tensor:
    """[batch, pos] float weights: 1 on real tokens, 0 on pads and on a leading BOS.

    The BOS is recognised per row as the first real token (left or right padding)
    when it equals ``bos_token_id``, so a tokenizer that adds none loses nothing.
    """
    weights = attention_mask.to(torch.float32).clone()
    if bos_token_id is not None:
        first = attention_mask.long().argmax(dim=1)  # first real position, either padding side
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        is_bos = (input_ids[rows, first] == bos_token_id) & attention_mask[rows, first].bool()
        weights[rows[is_bos], first[is_bos]] = 0.0
    if (weights.sum(dim=1) == 0).any():
        raise DataError("A sentence has no tokens besides BOS; remove empty sentences.")
    return weights


@torch.no_grad()
def sentence_representations(
    lm,
    sentences: dict[str, Sequence[str]],
    layers: Iterable[int] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    padding_side: str | None = None,
) -> SentenceReps:
    """Mean-pooled ``resid_post`` of every sentence at every requested layer.

    ``sentences`` maps a language code to its sentences, aligned by index. All
    texts are sorted by token length (less padding) and batched across languages;
    each batch is one capture of all requested layers. Pads and the BOS token are
    excluded from the mean (see :func:`pooling_weights`); the result does not
    depend on ``padding_side``.
    """
    from tqdm import tqdm

    langs, n = check_sentences(sentences)
    layers = list(range(lm.n_layers)) if layers is None else [lm.check_layer(layer) for layer in layers]
    names = lm.hook_names(layers=layers)
    items = [(li, si, sentences[lang][si]) for li, lang in enumerate(langs) for si in range(n)]
    lengths = [len(ids) for ids in lm.tokenizer([t for _, _, t in items], add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(items)), key=lambda k: -lengths[k])  # longest first: memory errors surface early
    bos = getattr(lm.tokenizer, "bos_token_id", None)

    reps = np.zeros((len(langs), n, len(layers), lm.d_model), dtype=np.float32)
    token_ids: list[list[list[int]]] = [[[] for _ in range(n)] for _ in langs]
    bar = tqdm(total=len(items), desc="probe representations", unit="sent", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            chunk = [items[k] for k in order[start:start + batch_size]]
            batch = lm.tokenize([t for _, _, t in chunk], padding_side=padding_side)
            weights = pooling_weights(batch["input_ids"], batch["attention_mask"], bos)
            cap = lm.capture(batch, names)
            denom = weights.sum(dim=1, keepdim=True)  # [batch, 1]
            pooled = torch.stack(
                [torch.einsum("bpd,bp->bd", cap[name].float(), weights) / denom for name in names], dim=1
            ).cpu().numpy()  # [batch, layers, d]
            ids_cpu, w_cpu = batch["input_ids"].cpu(), weights.cpu().bool()
            for row, (li, si, _) in enumerate(chunk):
                reps[li, si] = pooled[row]
                token_ids[li][si] = ids_cpu[row][w_cpu[row]].tolist()
            bar.update(len(chunk))
    finally:
        bar.close()
    return SentenceReps(reps, langs, layers, token_ids)
