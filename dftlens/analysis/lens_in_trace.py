"""The logit-lens measurement inside one nnsight trace: the same numbers as :func:`.lens.measure`,
computed where the model runs (on NDIF with ``remote=True``), so only a few numbers per
layer and prompt come back.

Inside the trace, for every block: the residual at each prompt's last real token,
the model's final norm and LM head (called ad hoc on that state), the logit
soft-cap, a float32 log-softmax, then the probability masses of the English,
target and input-language token sets (and the English set under each overlap policy), the entropy in bits and the top-k token
ids. What leaves the trace per batch is ``[layers, batch, sets + 1]`` floats and
``[layers, batch, k]`` ids; the vocabulary-sized tensors never do. The forward
pass stops after the last block (the model's own head never runs).

The same code runs locally (``remote=False``, weights loaded) and is tested there
against the TransformerLens engine's :func:`.lens.measure`, which dispatches here. On NDIF the norm and
head run in the model's dtype (as the model computes its own logits) and only
the softmax and everything after it in float32; locally, on a float32 model, the
two paths agree to 1e-4.

This module imports only torch at the top so that ``nnsight.register`` can ship
it to NDIF by value.
"""

from __future__ import annotations

import math

import numpy as np
import torch



def _submodule(envoy, path: str):
    for part in path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def lens_stats(hidden, norm, head, softcap, last, set_ids, set_weights, top_k: int):
    """Per prompt: the masses of its token sets, then ``entropy_bits``: [batch, sets + 1], and top-k ids [batch, k].

    ``hidden`` [batch, seq, d] (a block's output), ``last`` [batch] each row's last
    real position, ``set_ids``/``set_weights`` [batch, sets, K] token ids padded
    with weight 0. Runs inside the trace: torch only.
    """
    if isinstance(hidden, tuple):
        hidden = hidden[0]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    h = hidden[rows, last.to(hidden.device)]  # [batch, d]
    logits = head(norm(h)).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logp = torch.log_softmax(logits, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).nan_to_num(nan=0.0, neginf=0.0).sum(-1) / math.log(2)  # as lens.entropy_bits
    ids, weights = set_ids.to(probs.device), set_weights.to(probs.device)
    b, s, k = ids.shape
    masses = (probs.gather(1, ids.reshape(b, s * k)).reshape(b, s, k) * weights).sum(-1)  # [batch, sets]
    top = logp.topk(top_k, dim=-1).indices
    return torch.cat([masses, entropy[:, None]], dim=1), top


def _token_set_tensors(items, token_sets, policy: str = "exclusive"):
    """[batch, sets, K] ids and weights of each item's token sets (``lens.item_token_sets``:
    English, target, input word, then English under each overlap policy)."""
    from .lens_rows import item_token_sets

    sets = [[sorted(s) for s in item_token_sets(token_sets, item, policy)] for item in items]
    width = max(1, max(len(s) for row in sets for s in row))
    ids = torch.zeros(len(items), len(sets[0]), width, dtype=torch.long)
    weights = torch.zeros(len(items), len(sets[0]), width)
    for b, row in enumerate(sets):
        for j, s in enumerate(row):
            ids[b, j, :len(s)] = torch.tensor(s, dtype=torch.long)
            weights[b, j, :len(s)] = 1.0
    return ids, weights


@torch.no_grad()
def rows_in_trace(lm, chunk, token_sets, top_k: int = 10, show_tokens: int = 3,
                  policy: str = "exclusive") -> list[dict]:
    """The rows :func:`.lens.measure` builds for one batch of items, measured inside one nnsight trace.

    :func:`.lens.measure` calls this for a model whose engine has ``lens_in_trace``
    (nnsight with ``remote=True``, or set by hand to run the same code locally).
    Raises DftlensError if the engine is not nnsight, or if the NDIF run fails.
    """
    from ..errors import DftlensError
    from ..models.interface import last_token_index
    engine = lm.engine
    if getattr(engine, "name", None) != "nnsight":
        raise DftlensError("The in-trace lens needs the nnsight engine: load_model(..., backend='nnsight').")
    model, remote = engine.model, engine.remote
    if remote:
        import nnsight

        from . import lens_in_trace

        nnsight.register(lens_in_trace)  # NDIF rebuilds lens_stats from its source
    # Plain values only inside the trace: on NDIF its code and the values it uses are shipped over.
    layers_path, norm_path, head_path, softcap = lm.arch.layers_path, lm.arch.norm_path, _head_path(lm), lm.arch.softcap
    n_layers = lm.n_layers
    batch = lm.tokenize([it.prompt for it in chunk])
    inputs = lm.model_inputs(batch)
    last = last_token_index(batch["attention_mask"])
    set_ids, set_weights = _token_set_tensors(chunk, token_sets, policy)
    try:
        with model.trace(inputs, remote=remote) as tracer:
            blocks, norm, head = _submodule(model, layers_path), _submodule(model, norm_path), _submodule(model, head_path)
            stats_per_layer, top_per_layer = [], []
            for layer in range(n_layers):
                stats, top = lens_stats(blocks[layer].output, norm, head, softcap, last, set_ids, set_weights, top_k)
                stats_per_layer.append(stats)
                top_per_layer.append(top)
            stats = torch.stack(stats_per_layer).cpu().save()  # [layers, batch, sets + 1]
            top_ids = torch.stack(top_per_layer).cpu().save()  # [layers, batch, k]
            tracer.stop()
    except Exception as exc:
        if not remote:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise DftlensError(
            f"The NDIF run of {lm.name} failed ({type(exc).__name__}: {first_line}); check network access to "
            "api.ndif.us, the API key, and that NDIF serves this model (nnsight.ndif.status())."
        ) from None
    return _rows(lm, chunk, stats, top_ids, token_sets, show_tokens, policy)


def _head_path(lm) -> str:
    head = lm.hf_model.get_output_embeddings()
    for name, module in lm.hf_model.named_modules():
        if module is head:
            return name
    raise RuntimeError("the LM head is not a submodule of the model")  # pragma: no cover


def _rows(lm, chunk, stats, top_ids, token_sets, show_tokens, policy):
    from .lens_rows import lens_row

    out = []
    for b, item in enumerate(chunk):
        for layer in range(stats.shape[0]):
            ids = top_ids[layer, b].tolist()
            values = stats[layer, b].tolist()  # the sets' masses, then the entropy
            out.append(lens_row(token_sets, item, layer, values[:-1], values[-1], ids,
                                lm.tokenizer.convert_ids_to_tokens(ids), show_tokens, policy))
    return out
