"""Held-out loss: the mean NLL of target-language responses the model never trained on.

The cheapest, least noisy before/after measure for instruction data: it uses the
same prompt format, the same exact tokenisation (prompt + response as one text)
and the same masked loss as ``L_TFT``, on examples disjoint from
the training file, summed over response tokens and divided once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.instruction_files import load_instructions
from ..data.instructions import PromptFormat, encode_pairs
from ..data.packing import IGNORE, pack
from ..models import LensModel


@torch.no_grad()
def heldout_nll(lm: LensModel, data: str | None, lang: str, batch_size: int = 8, max_length: int = 512,
                template: str = "plain", english: bool = False) -> dict:
    """Mean NLL (nats per response token) of ``lang`` responses in ``data``.

    ``data`` is an instruction file (None: the bundled held-out split); with
    ``english=True`` the English side of the same ``lang`` examples is scored (the
    regression check that target-language training did not cost English). Returns the
    token-weighted ``nll`` and ``ppl``, and ``per_example`` (each example's mean NLL,
    in file order) for standard errors and paired comparisons between models.
    """
    from ..data.parallel import bundled_path

    source = data or str(bundled_path("instructions_heldout.jsonl"))
    pairs = encode_pairs(load_instructions(source, lang), PromptFormat(lm.tokenizer, template), max_length,
                         drop_long=True, english_response=english)
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    last = lm.hook_name(lm.n_layers - 1)
    total, tokens, per_example = 0.0, 0, []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        # each row is prompt + response tokenised as one text, as the model reads it
        packed = pack([p.en_main if english else p.main for p in chunk], pad, tok.bos_token_id)
        packed = packed.to(lm.device)
        resid = lm.capture(packed.model_inputs(), [last])[last]
        for row in range(len(chunk)):
            keep = packed.targets[row] != IGNORE
            n = int(keep.sum())
            # the logit lens of the last block's output is the model's own logits (float32)
            logits = lm.decode(resid[row][keep])
            loss = float(F.cross_entropy(logits, packed.targets[row][keep].to(logits.device))) if n else 0.0
            per_example.append(loss)
            total, tokens = total + loss * n, tokens + n
    nll = total / max(tokens, 1)
    return {"nll": nll, "ppl": math.exp(nll), "tokens": tokens, "examples": len(pairs), "per_example": per_example}
