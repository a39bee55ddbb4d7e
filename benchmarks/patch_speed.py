"""Cost of a concept-patching sweep over all layers, as a ratio to a bare forward pass.

On the embedded model (Gemma-3-270M), N concept pairs (de->ru into fr->zh, the
``dftlens patch`` default): the sweep captures the source prompts' last-token
latents at every layer and patches each into its target prompt at every layer
(``patch_sweep``), pairs x layers rows. The baseline is a bare Hugging Face
forward pass (logits of the last position only) on the same pairs x layers
rows, in the same chunks of rows. Both are timed interleaved, medians over
repeats. Also timed: the sweep without the shared-prefix KV cache (every row
runs its whole prompt), which isolates the cost of the hooks and edits.
Usage: python benchmarks/patch_speed.py [--pairs 4] [--repeats 3] [--rows 72] [--warmup 1] [--skip-full]
"""

from __future__ import annotations

import argparse

import torch

from dftlens import load_model
from dftlens.analysis.patch_pairs import concept_pairs
from dftlens.analysis.patch_sweep import last_token_latents, patch_sweep, set_masses
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words

from timing import interleaved_medians, print_ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=72, help="prompt rows per forward pass")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--skip-full", action="store_true", help="do not time the sweep without the prefix cache")
    args = parser.parse_args()

    lm = load_model("gemma3-270m")
    words = load_words(None, ["en", "de", "ru", "fr", "zh"])
    pairs = concept_pairs(words, ("de", "ru"), ("fr", "zh"), TokenSets(lm.tokenizer), args.pairs, seed=0)
    sources, targets = [p["source"] for p in pairs], [p["target"] for p in pairs]
    layers = list(range(lm.n_layers))
    readout = set_masses([p["sets"] for p in pairs])
    rows = [t for t in targets for _ in layers]  # the same pairs x layers rows, unpatched
    per_pass = max(1, args.rows // len(layers)) * len(layers)
    chunks = [lm.tokenize(rows[i:i + per_pass]) for i in range(0, len(rows), per_pass)]
    print(f"{len(pairs)} pairs x {len(layers)} layers = {len(rows)} rows, {per_pass} rows per pass, "
          f"prompt length {chunks[0]['input_ids'].shape[1]}, torch threads {torch.get_num_threads()}")

    def sweep(prefix_cache: bool):
        latents = last_token_latents(lm, sources)
        return patch_sweep(lm, targets, latents, layers, readout, rows_per_pass=args.rows, prefix_cache=prefix_cache)

    with torch.no_grad():
        candidates = {
            "bare forward, pairs x layers rows": lambda: [lm.forward_logits(c, logits_to_keep=1) for c in chunks],
            "patching sweep (dftlens patch)": lambda: sweep(True),
        }
        if not args.skip_full:
            candidates["patching sweep, no prefix cache"] = lambda: sweep(False)
        medians = interleaved_medians(candidates, repeats=args.repeats, warmup=args.warmup)
    print_ratios(medians, "bare forward, pairs x layers rows")


if __name__ == "__main__":
    main()
