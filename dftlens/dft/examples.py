"""``dftlens train --dump-examples N``: the exact token sequences a run trains on.

For each of the first ``N`` examples, one JSON line with every sequence the
losses use (``main``: target prompt + response, L_TFT; ``lc``: target prompt +
English query, LC logits; ``et``: target prompt + English response, ET logits;
``english``: the English prompt, feature losses), each as Hugging Face would
feed it: ``input_ids``, ``labels`` (the token itself where a loss is taken,
-100 where masked; unshifted, as ``labels=`` of a causal LM), ``tokens`` (the
vocabulary pieces, so a stray "▁" shows) and ``text`` (prefix and continuation,
decoded). No model is loaded and nothing trains.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import ownership
from ..data.instructions import EncodedPair, Segmented
from ..io import atomic_path
from ..output_dirs import prepare_output_dir

EXAMPLES = "examples.jsonl"


def describe(seq: Segmented, tokenizer) -> dict:
    """One sequence as ids, HF labels (-100 where masked), vocabulary pieces and decoded text."""
    labels = [-100] * seq.prefix + seq.continuation
    return {
        "input_ids": seq.ids,
        "labels": labels,
        "tokens": tokenizer.convert_ids_to_tokens(seq.ids),
        "prefix_tokens": seq.prefix,
        "prefix_text": tokenizer.decode(seq.ids[: seq.prefix]),
        "continuation_text": tokenizer.decode(seq.continuation),
    }


def example_record(pair: EncodedPair, tokenizer) -> dict:
    """One ``examples.jsonl`` record: ``id``, ``where`` and :func:`describe` of the four sequences."""
    return {"id": pair.id, "where": pair.where,
            **{name: describe(getattr(pair, name), tokenizer) for name in ("main", "lc", "et", "english")}}


def dump_examples(cfg, n: int, overwrite: bool = False) -> Path:
    """Write ``<cfg.out>/examples.jsonl`` for the first ``n`` examples of ``cfg``'s data; return its path."""
    from .prepare import load_tokenizer, load_training_data, model_source

    out = prepare_output_dir(cfg.out, [EXAMPLES], overwrite)
    tokenizer = load_tokenizer(model_source(cfg, None)[0], cfg.trust_remote_code)
    pairs = load_training_data(cfg, tokenizer)[:n]
    with atomic_path(out / EXAMPLES) as tmp:
        tmp.write_text("".join(json.dumps(example_record(p, tokenizer), ensure_ascii=False) + "\n" for p in pairs),
                       encoding="utf-8")
    ownership.record(out, [EXAMPLES])
    return out / EXAMPLES
