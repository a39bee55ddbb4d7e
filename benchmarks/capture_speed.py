"""Cost of reading activations, as a ratio to a bare forward pass, per engine.

On the embedded model (Gemma-3-270M), the same batch of prompts: a bare Hugging
Face forward (logits for the last position only), then captures through each
engine of the residual stream (resid_post at every layer, all positions) and of
every site (resid_pre/attn_out/resid_mid/mlp_out/resid_post at every layer).
Usage: python benchmarks/capture_speed.py [--repeats 7] [--batch 16]
"""

from __future__ import annotations

import argparse

import torch

from dftlens import load_model
from dftlens.analysis.lens import translation_prompt
from dftlens.models.hook_points import SITES

from timing import interleaved_medians, print_ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    tl = load_model("gemma3-270m")
    nn = tl.with_backend("nnsight")
    words = ["eau", "chien", "maison", "soleil", "arbre", "pain", "lune", "feu"]
    batch = tl.tokenize([translation_prompt(words[i % len(words)]) for i in range(args.batch)])
    resid = tl.hook_names("resid_post")
    every = [n for site in SITES for n in tl.hook_names(site)]
    print(f"batch {tuple(batch['input_ids'].shape)}, {tl.n_layers} layers, torch threads {torch.get_num_threads()}")

    with torch.no_grad():
        medians = interleaved_medians({
            "bare forward (logits_to_keep=1)": lambda: tl.forward_logits(batch, logits_to_keep=1),
            "transformer_lens: resid_post, all layers": lambda: tl.capture(batch, resid),
            "nnsight: resid_post, all layers": lambda: nn.capture(batch, resid),
            "transformer_lens: every site, all layers": lambda: tl.capture(batch, every),
            "nnsight: every site, all layers": lambda: nn.capture(batch, every),
        }, repeats=args.repeats)
    print_ratios(medians, "bare forward (logits_to_keep=1)")


if __name__ == "__main__":
    main()
