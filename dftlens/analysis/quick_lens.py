"""A one-prompt logit-lens table: the quickest look at the English pivot."""

from __future__ import annotations

import pandas as pd
import torch

from ..models import LensModel
from .lens import entropy_bits

# Wendler et al.'s translation format with four demonstrations.
_DEMOS = [("livre", "书"), ("chien", "狗"), ("fleur", "花"), ("lune", "月亮")]


def translation_prompt(word: str) -> str:
    shots = "\n".join(f'Français: "{fr}" - 中文: "{zh}"' for fr, zh in _DEMOS if fr != word)
    return f'{shots}\nFrançais: "{word}" - 中文: "'


@torch.no_grad()
def lens_table(lm: LensModel, prompt: str, top_k: int = 3) -> pd.DataFrame:
    """Per layer: the top tokens of the logit lens at the last position, and entropy in bits."""
    batch = lm.tokenize([prompt])
    names = lm.hook_names()
    cap = lm.capture(batch, names, positions="last")
    logp = lm.log_probs(cap.stack(names)[:, 0])  # [layers, vocab]
    entropy = entropy_bits(logp)
    top = logp.topk(top_k, dim=-1)
    rows = []
    for layer in range(lm.n_layers):
        tokens = lm.tokenizer.convert_ids_to_tokens(top.indices[layer].tolist())
        probs = top.values[layer].exp().tolist()
        rows.append({
            "layer": layer,
            "entropy_bits": round(float(entropy[layer]), 2),
            "top_tokens": "  ".join(f"{t!r} {p:.2f}" for t, p in zip(tokens, probs)),
        })
    return pd.DataFrame(rows)
