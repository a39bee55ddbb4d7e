"""The probe's forward-plus-lens pass over a bare forward pass, next to its floor.

On the embedded model, the same translation prompts: (a) a bare forward with
``logits_to_keep=1``; (b) what `dftlens probe` does per batch: capture resid_post
at the last real token of every layer and decode it through the logit lens
(log-softmax over the full vocabulary, one position per layer), then reduce to
P(en), P(target), entropy and top-k. The arithmetic floor is the FLOP ratio
(body + L x head) / (body + 1 x head): the lens decodes L positions where the bare
pass decodes one. Target: measured ratio within 1.2x of the floor.
Usage: python benchmarks/probe_speed.py [--repeats 7] [--batch 16]
"""

from __future__ import annotations

import argparse

import torch

from dftlens import load_model
from dftlens.analysis.lens import measure
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items

from timing import interleaved_medians, print_ratios


def flops_floor(lm, seq_len: int) -> float:
    cfg = lm.config
    n_params = sum(p.numel() for p in lm.hf_model.parameters())
    embed = lm.hf_model.get_input_embeddings().weight.numel()
    body = 2 * (n_params - embed) * seq_len
    attn = 4 * lm.n_layers * seq_len**2 * cfg.num_attention_heads * cfg.head_dim
    head = 2 * lm.d_model * lm.vocab_size
    return (body + attn + lm.n_layers * head) / (body + attn + head)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    lm = load_model("gemma3-270m")
    items = translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[: args.batch]
    token_sets = TokenSets(lm.tokenizer)
    for it in items:  # build token sets once, as a probe run does before its loop
        token_sets.ids(it.answer), token_sets.ids(it.answer_en)
    batch = lm.tokenize([it.prompt for it in items])
    seq_len = int(batch["attention_mask"].sum(1).float().mean())

    with torch.no_grad():
        medians = interleaved_medians({
            "bare forward (logits_to_keep=1)": lambda: lm.forward_logits(batch, logits_to_keep=1),
            "probe pass (capture + lens + reductions)": lambda: measure(lm, items, token_sets, batch_size=len(items), progress=False),
        }, repeats=args.repeats)
    floor = flops_floor(lm, seq_len)
    ratio = medians["probe pass (capture + lens + reductions)"] / medians["bare forward (logits_to_keep=1)"]
    print(f"batch {len(items)} prompts, mean {seq_len} tokens, {lm.n_layers} layers, vocab {lm.vocab_size}")
    print_ratios(medians, "bare forward (logits_to_keep=1)")
    print(f"arithmetic floor {floor:.3f}; measured / floor = {ratio / floor:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
