"""Cost of the LAPE statistics pass (``dftlens neurons``) as a ratio to a bare forward pass.

On the embedded model (Gemma-3-270M) by default, N parallel sentences per language
(bundled): ``activation_stats`` (forward hooks on every layer's activation module and down
projection adding to ``[L, N, K]`` counters) against a bare Hugging Face forward pass
(``logits_to_keep=1``) over the same sentences in the same batches, tokenised the same way.
Both are timed interleaved, medians over repeats (``timing.py``). Also printed: the memory
the statistics keep (the counters, O(layers x neurons x languages)) beside what an
activation matrix of the corpus would take (O(tokens x neurons x layers)).
Target: ratio <= 1.3.
Usage: python benchmarks/neurons_speed.py [--model gemma3-270m] [--sentences 48] [--langs en,zh,fr]
       [--repeats 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse

import torch

from dftlens import load_model
from dftlens.analysis.lape import activation_stats
from dftlens.data.parallel import load_sentences
from dftlens.models.mlp_layout import d_mlp

from timing import interleaved_medians, print_ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--sentences", type=int, default=48, help="sentences per language")
    parser.add_argument("--langs", default="en,zh,fr")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    lm = load_model(args.model)
    langs = args.langs.split(",")
    data = load_sentences(None, langs)
    texts = {lang: data.column(lang)[: args.sentences] for lang in langs}

    def bare() -> int:
        tokens = 0
        for lang in langs:
            ordered = sorted(texts[lang], key=len)  # the statistics pass batches the same way
            for start in range(0, len(ordered), args.batch_size):
                batch = lm.tokenize(ordered[start:start + args.batch_size], padding_side="right",
                                    max_length=args.max_length)
                lm.forward_logits(batch, logits_to_keep=1)
                tokens += int(batch["attention_mask"].sum())
        return tokens

    with torch.no_grad():
        n_tokens = bare()
        print(f"{args.model}: {len(langs)} languages x {args.sentences} sentences, {n_tokens} tokens, batch "
              f"{args.batch_size}, torch threads {torch.get_num_threads()}")
        medians = interleaved_medians({
            "bare forward, same batches": bare,
            "LAPE statistics (activation_stats)": lambda: activation_stats(lm, texts, args.batch_size,
                                                                            args.max_length, progress=False),
        }, repeats=args.repeats, warmup=args.warmup)
    print_ratios(medians, "bare forward, same batches")
    L, N, K = lm.n_layers, d_mlp(lm.hf_model), len(langs)
    kept = 3 * L * N * K * 8  # active, post_sum (float64 [L, N, K]) and the float64 per-language counters
    matrix = n_tokens * N * L * 4  # float32 activations of the whole corpus at every layer
    print(f"memory kept by the statistics: {kept / 2**20:.2f} MiB (O(L x N x K) = {L} x {N} x {K}); an activation "
          f"matrix of these {n_tokens} tokens would be {matrix / 2**20:.1f} MiB and grows with the corpus")


if __name__ == "__main__":
    main()
