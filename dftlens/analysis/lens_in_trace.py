"""The logit-lens measurement inside one nnsight trace: the same numbers as :func:`.lens.measure`,
computed where the model runs (on NDIF with ``remote=True``), so only a few numbers per
layer and prompt come back.

Inside the trace, for every block: the residual at each prompt's last real token,
the model's final norm and LM head modules (called ad hoc on that state), then the
lens kernel (:mod:`dftlens.models.lens_kernel`, the one of the local lens): the logit
soft-cap and one pass over the float32 logits giving the probability masses of the
English, target and input-language token sets (and the English set under each overlap
policy), the entropy in bits and the top-k token ids. What leaves the trace per batch is
``[layers, batch, sets + 1]`` floats and ``[layers, batch, k]`` ids; the vocabulary-sized
tensors never do. The forward pass stops after the last block (the model's own head never runs).

The same code runs locally (``remote=False``, weights loaded) and is tested there
against the TransformerLens engine's :func:`.lens.measure`, which dispatches here. The
dtype policy is the kernel's: the norm and head run as the model runs them (here its own
modules, in its dtype), everything from the logits on in float32; locally, on a float32
model, the two paths agree to 1e-4.

This module imports only torch and the kernel (itself torch-only) at the top, so that
``nnsight.register`` can ship both to NDIF by value.
"""

from __future__ import annotations

import torch

from ..models.lens_kernel import cap_logits, reduce_logits


def _submodule(envoy, path: str):
    for part in path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def lens_stats(hidden, norm, head, softcap, last, set_ids, set_weights, top_k: int):
    """Per prompt: the masses of its token sets, then ``entropy_bits``: [batch, sets + 1], and top-k ids [batch, k].

    ``hidden`` [batch, seq, d] (a block's output), ``last`` [batch] each row's last
    real position, ``set_ids``/``set_weights`` [batch, sets, K] token ids padded
    with weight 0. Runs inside the trace: the model's own norm and head modules, then
    the lens kernel (:func:`~dftlens.models.lens_kernel.cap_logits`,
    :func:`~dftlens.models.lens_kernel.reduce_logits`), as the local lens.
    """
    if isinstance(hidden, tuple):
        hidden = hidden[0]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    h = hidden[rows, last.to(hidden.device)]  # [batch, d]
    red = reduce_logits(cap_logits(head(norm(h)).float(), softcap), set_ids, set_weights, top_k)
    return torch.cat([red.masses, red.entropy_bits[:, None]], dim=1), red.top_ids


@torch.no_grad()
def stats_in_trace(lm, chunk, token_sets, top_k: int = 10,
                   policy: str = "exclusive") -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`.lens.measure` needs of one batch of items, measured inside one nnsight trace.

    Returns ``stats`` [layers, batch, sets + 1] (the masses of
    :func:`~.lens_rows.item_token_sets`'s sets, then the entropy in bits; CPU float32) and
    ``top_ids`` [layers, batch, k], for :func:`~.lens_rows.batch_rows`. :func:`.lens.measure`
    calls this for a model whose engine has ``lens_in_trace`` (nnsight with ``remote=True``,
    or set by hand to run the same code locally). Raises DftlensError if the engine is not
    nnsight, or if the NDIF run fails;
    NonFiniteError if a layer's lens statistics hold NaN or inf (the first such layer is named).
    """
    from ..errors import DftlensError
    from ..models import lens_kernel
    from ..models.engine_protocol import last_token_index
    from .lens_rows import item_set_tensors

    model, remote = lm.trace_target()
    if remote:
        import nnsight

        from . import lens_in_trace

        nnsight.register(lens_kernel)  # NDIF rebuilds the kernel and lens_stats from their source
        nnsight.register(lens_in_trace)
    # Plain values only inside the trace: on NDIF its code and the values it uses are shipped over.
    layers_path, norm_path, head_path, softcap = lm.arch.layers_path, lm.arch.norm_path, _head_path(lm), lm.arch.softcap
    n_layers = lm.n_layers
    batch = lm.tokenize([it.prompt for it in chunk], labels=[it.label for it in chunk])
    inputs = lm.model_inputs(batch)
    last = last_token_index(batch["attention_mask"])
    set_ids, set_weights = item_set_tensors(token_sets, chunk, policy)
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
    from ..numerics import check_activations

    check_activations({lm.hook_name(layer): stats[layer] for layer in range(lm.n_layers)}, lm.name, lm.dtype)
    return stats, top_ids


def _head_path(lm) -> str:
    head = lm.hf_model.get_output_embeddings()
    for name, module in lm.hf_model.named_modules():
        if module is head:
            return name
    raise RuntimeError("the LM head is not a submodule of the model")  # pragma: no cover
