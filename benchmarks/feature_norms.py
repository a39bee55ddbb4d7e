"""How much signal each feature-loss variant carries, on the embedded model with LoRA.

For every ``--feature-norm`` (``none`` is the paper's form), the same micro-batches
of the bundled zh instruction data (batch 4), LC feature at layer ``--lc-layer``
and ET feature at ``--et-layer``, weights 1, with the LoRA adapters exactly as
``dftlens train --lora`` sets them up and the learning rate at 0 (so every
variant sees the same weights; the running statistics of ``center`` and
``standardize`` do accumulate over the steps). Per step and component:

- the loss value;
- ``gnorm``: the norm of the gradient of the loss with respect to the target-side
  residual states at its layer (what ``dftlens train`` logs as ``lc_gnorm`` /
  ``et_gnorm``);
- ``param``: the norm of its gradient with respect to the trainable (LoRA)
  parameters, next to the same norm for L_TFT.

Printed: medians over the steps, and ``param / tft``: how strong each feature
loss pulls relative to the main loss at weight 1.

Usage: python benchmarks/feature_norms.py [--steps 4] [--lc-layer 3] [--et-layer 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch

from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import collate
from dftlens.dft.config import TrainConfig
from dftlens.dft.feature_signal import FEATURE_NORMS
from dftlens.dft.losses import DFTLoss
from dftlens.dft.prepare import load_for_training


def grad_norm(value: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum(g.float().pow(2).sum() for g in grads if g is not None)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lc-layer", type=int, default=3)
    parser.add_argument("--et-layer", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--norms", default=",".join(FEATURE_NORMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = load_for_training(TrainConfig(lora=True, lc_signal="off", et_signal="off"), None, "cpu")[0]
    lm.hf_model.train()
    tok = lm.tokenizer
    pairs = encode_pairs(load_instructions(None, "zh"), PromptFormat(tok), max_length=256, drop_long=True)
    batches = [collate(pairs[k * args.batch:(k + 1) * args.batch], "feature", "feature", tok.pad_token_id,
                       tok.bos_token_id) for k in range(args.steps)]
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    rows = []
    for norm in args.norms.split(","):
        loss = DFTLoss(lm, "feature", "feature", lm.hook_name(args.lc_layer), lm.hook_name(args.et_layer),
                       feature_norm=norm)
        for step, batch in enumerate(batches):
            gnorms: dict = {}
            parts = loss.main_pass(batch.main, *loss._english(batch), gnorms=gnorms)
            tft = grad_norm(parts["tft"], params)
            for kind in ("lc", "et"):
                rows.append({"norm": norm, "step": step, "loss": kind, "value": float(parts[kind].detach()),
                             "gnorm": gnorms[f"{kind}_gnorm"], "param": grad_norm(parts[kind], params),
                             "tft_param": tft})
            print(f"{norm} step {step}: " + ", ".join(f"{r['loss']} {r['value']:.4g} (gnorm {r['gnorm']:.3g}, "
                                                      f"param {r['param']:.3g})" for r in rows[-2:])
                  + f"; tft param {tft:.3g}", flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["norm", "loss"], sort=False)[["value", "gnorm", "param", "tft_param"]].agg(
        statistics.median)
    summary["param / tft"] = summary["param"] / summary["tft_param"]
    pd.set_option("display.width", 200)
    print(f"\nmedians over {args.steps} micro-batches of {args.batch}; LC layer {args.lc_layer}, "
          f"ET layer {args.et_layer}; LoRA r 16 as initialised, lr 0")
    print(summary.to_string(float_format=lambda x: f"{x:.4g}"))


if __name__ == "__main__":
    main()
