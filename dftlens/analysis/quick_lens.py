"""One prompt, one call: a per-layer logit-lens table (the quickest look at the English pivot).

    import dftlens
    lm = dftlens.load_model("gemma3-270m")
    table = dftlens.lens_table(lm, 'Français: "eau" - 日本語: "', answers={"en": "water", "ja": "水"})
    table[["layer", "p_en", "p_ja", "entropy_bits", "top_tokens"]]
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import torch

from ..errors import DataError
from ..models import LensModel
from .lens import entropy_bits
from .token_sets import TokenSets

# Wendler et al.'s translation format with four demonstrations.
_DEMOS = [("livre", "书"), ("chien", "狗"), ("fleur", "花"), ("lune", "月亮")]


def translation_prompt(word: str) -> str:
    """A fr->zh translation prompt for ``word`` with four demonstrations (``dftlens lens --word``)."""
    shots = "\n".join(f'Français: "{fr}" - 中文: "{zh}"' for fr, zh in _DEMOS if fr != word)
    return f'{shots}\nFrançais: "{word}" - 中文: "'


@torch.no_grad()
def lens_table(lm: LensModel, prompt: str, answers: Mapping[str, str] | None = None,
               top_k: int = 3) -> pd.DataFrame:
    """The logit lens at the last position of one prompt, one row per layer.

    Args:
        lm: a loaded model (``dftlens.load_model``).
        prompt: the text; the lens reads the position after its last token, so end it
            where the answer should start (e.g. ``... 日本語: "``).
        answers: optional ``{name: word}``, e.g. ``{"en": "water", "ja": "水"}``: for each,
            a column ``p_<name>`` with the lens probability of the word's token set
            (Wendler's prefix sets, :class:`~dftlens.analysis.token_sets.TokenSets`).
        top_k: how many top tokens to show per layer.

    Returns:
        DataFrame with ``n_layers`` rows (0-based block index ``layer``) and columns
        ``layer``, ``p_<name>`` per answer (probability in [0, 1]), ``entropy_bits``
        (entropy of the lens distribution, bits), ``top_tokens`` (``"'tok' 0.42  ..."``,
        the ``top_k`` tokens with their probabilities), ``top_token`` (the first of them).

    Raises:
        DataError: an answer word has no token in the vocabulary (its probability would
            be a meaningless 0).
    """
    answers = dict(answers or {})
    sets = TokenSets(lm.tokenizer)
    ids = {}
    for name, word in answers.items():
        ids[name] = sets.ids(word)
        if not ids[name]:
            raise DataError(f"No token of the vocabulary starts the answer {word!r} ({name}); check the word.")
    batch = lm.tokenize([prompt])
    names = lm.hook_names()
    cap = lm.capture(batch, names, positions="last")
    logp = lm.log_probs(cap.stack(names)[:, 0]).float().cpu()  # [layers, vocab]
    probs = logp.exp()
    entropy = entropy_bits(logp)  # [layers]
    top = logp.topk(top_k, dim=-1)
    rows = []
    for layer in range(lm.n_layers):
        tokens = lm.tokenizer.convert_ids_to_tokens(top.indices[layer].tolist())
        values = top.values[layer].exp().tolist()
        row = {"layer": layer}
        for name, id_set in ids.items():
            row[f"p_{name}"] = float(probs[layer, sorted(id_set)].sum())
        row["entropy_bits"] = float(entropy[layer])
        row["top_tokens"] = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(tokens, values))
        row["top_token"] = tokens[0]
        rows.append(row)
    return pd.DataFrame(rows)
