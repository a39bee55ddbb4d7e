"""Where each model family keeps its blocks, final norm and per-site modules.

Like nnterp, one small table per family maps the family's own module names onto
the TransformerLens vocabulary in ``hooks.py``; nothing outside this file and the
engines needs to know them. Llama, Mistral and Qwen2 share the Llama layout;
Gemma-2 and Gemma-3 add norms after attention and after the MLP, so what a block
adds to the residual stream is the output of those post-norms.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import DftlensError

# site -> (submodule of the decoder layer, "input" | "output")
LLAMA_SITES = {
    "resid_pre": ("", "input"),
    "attn_out": ("self_attn", "output"),
    "resid_mid": ("post_attention_layernorm", "input"),
    "mlp_out": ("mlp", "output"),
    "resid_post": ("", "output"),
}
GEMMA_SITES = {
    "resid_pre": ("", "input"),
    "attn_out": ("post_attention_layernorm", "output"),
    "resid_mid": ("pre_feedforward_layernorm", "input"),
    "mlp_out": ("post_feedforward_layernorm", "output"),
    "resid_post": ("", "output"),
}


@dataclass
class Architecture:
    layers_path: str  # e.g. "model.layers"
    norm_path: str  # e.g. "model.norm"
    sites: dict[str, tuple[str, str]]
    softcap: float | None  # final logit soft-cap (Gemma-2), None when absent


def describe(hf_model: nn.Module) -> Architecture:
    inner = getattr(hf_model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "norm"):
        raise DftlensError(
            f"dftlens does not know the layout of {type(hf_model).__name__}; it supports "
            "Llama-style and Gemma-style decoder models (model.layers, model.norm)."
        )
    gemma_style = hasattr(inner.layers[0], "pre_feedforward_layernorm")
    config = hf_model.config
    return Architecture(
        layers_path="model.layers",
        norm_path="model.norm",
        sites=GEMMA_SITES if gemma_style else LLAMA_SITES,
        softcap=getattr(config, "final_logit_softcapping", None) or None,
    )
