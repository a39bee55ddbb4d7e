"""Where each model family keeps its blocks, final norm and per-site modules.

Like nnterp, one small table per family maps the family's own module names onto
the TransformerLens vocabulary in ``hook_points.py``; nothing outside this file and the
engines needs to know them. The TransformerLens engine reads the bridge's own
hooks (TransformerLens 4 knows every family listed here); the tables below are
what the nnsight engine, the logit lens (final norm) and the checks use, and the
parity tests hold both engines to Hugging Face's ``hidden_states``.

Sites (what a block adds to the residual stream, so ``resid_mid == resid_pre +
attn_out`` and ``resid_post == resid_mid + mlp_out``):

- Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 1, Phi-3 (pre-norm, the Llama layout):
  all five sites.
- Gemma-2/3 (norms after attention and MLP, inside the residual branch) and OLMo-2
  (post-norms only): ``attn_out``/``mlp_out`` are the post-norm outputs; all five.
- GPT-2: all five (``ln_2``'s input is ``resid_mid``).
- BLOOM: its attention and MLP modules add the residual themselves, so
  ``attn_out`` and ``mlp_out`` are differences of residual states
  (``resid_mid - resid_pre``, ``resid_post - resid_mid``): read-only, not editable.
- GPT-NeoX (Pythia) with ``use_parallel_residual`` (the default): attention and
  MLP read the same ``resid_pre`` and are added together, so there is no
  ``resid_mid``: the sites are ``resid_pre``, ``attn_out``, ``mlp_out``,
  ``resid_post`` with ``resid_post == resid_pre + attn_out + mlp_out``. Without
  parallel residual, all five.

Every family also has the MLP's hidden activation ``mlp_post`` (hook name
``blocks.{l}.mlp.hook_post``): the input of the down/output projection, read and
written on both engines. Which parameters each hidden unit owns, and which module's
output is "active > 0" for language neurons, is :mod:`dftlens.models.mlp_layout`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import DftlensError, LayerError

# site -> (submodule of the decoder layer, "input" | "output")
Sites = dict[str, tuple[str, str]]

LLAMA_SITES: Sites = {
    "resid_pre": ("", "input"),
    "attn_out": ("self_attn", "output"),
    "resid_mid": ("post_attention_layernorm", "input"),
    "mlp_out": ("mlp", "output"),
    "mlp_post": ("mlp.down_proj", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
GEMMA_SITES: Sites = {
    "resid_pre": ("", "input"),
    "attn_out": ("post_attention_layernorm", "output"),
    "resid_mid": ("pre_feedforward_layernorm", "input"),
    "mlp_out": ("post_feedforward_layernorm", "output"),
    "mlp_post": ("mlp.down_proj", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
OLMO2_SITES: Sites = {
    "resid_pre": ("", "input"),
    "attn_out": ("post_attention_layernorm", "output"),
    "resid_mid": ("mlp", "input"),
    "mlp_out": ("post_feedforward_layernorm", "output"),
    "mlp_post": ("mlp.down_proj", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
GPT2_SITES: Sites = {
    "resid_pre": ("", "input"),
    "attn_out": ("attn", "output"),
    "resid_mid": ("ln_2", "input"),
    "mlp_out": ("mlp", "output"),
    "mlp_post": ("mlp.c_proj", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
NEOX_SITES: Sites = {
    "resid_pre": ("", "input"),
    "attn_out": ("attention", "output"),
    "resid_mid": ("post_attention_layernorm", "input"),  # sequential residual only
    "mlp_out": ("mlp", "output"),
    "mlp_post": ("mlp.dense_4h_to_h", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
BLOOM_SITES: Sites = {
    "resid_pre": ("", "input"),
    "resid_mid": ("post_attention_layernorm", "input"),
    "mlp_post": ("mlp.dense_4h_to_h", "input"),  # blocks.{l}.mlp.hook_post
    "resid_post": ("", "output"),
}
BLOOM_DERIVED = {"attn_out": ("resid_mid", "resid_pre"), "mlp_out": ("resid_post", "resid_mid")}


@dataclass(frozen=True)
class Family:
    """One row of the table: a decoder family and where its parts are."""

    name: str  # what users call it
    model_types: tuple[str, ...]  # Hugging Face config.model_type values
    layers_path: str
    norm_path: str
    sites: Sites
    derived: dict = field(default_factory=dict)  # site -> (a, b): the site is a - b
    position_ids: bool = True  # the HF forward takes position_ids (BLOOM: ALiBi from the mask)
    example: str = ""


FAMILIES: tuple[Family, ...] = (
    Family("Llama 2/3", ("llama",), "model.layers", "model.norm", LLAMA_SITES, example="meta-llama/Llama-2-7b-hf"),
    Family("Mistral", ("mistral",), "model.layers", "model.norm", LLAMA_SITES, example="mistralai/Mistral-7B-v0.1"),
    Family("Qwen2/2.5", ("qwen2",), "model.layers", "model.norm", LLAMA_SITES, example="Qwen/Qwen2.5-7B"),
    Family("Qwen3", ("qwen3",), "model.layers", "model.norm", LLAMA_SITES, example="Qwen/Qwen3-8B-Base"),
    Family("Gemma", ("gemma",), "model.layers", "model.norm", LLAMA_SITES, example="google/gemma-7b"),
    Family("Gemma-2", ("gemma2",), "model.layers", "model.norm", GEMMA_SITES, example="google/gemma-2-9b"),
    Family("Gemma-3", ("gemma3_text",), "model.layers", "model.norm", GEMMA_SITES, example="google/gemma-3-1b-pt"),
    Family("Phi-3", ("phi3",), "model.layers", "model.norm", LLAMA_SITES, example="microsoft/Phi-3-mini-4k-instruct"),
    Family("OLMo-2", ("olmo2",), "model.layers", "model.norm", OLMO2_SITES, example="allenai/OLMo-2-1124-7B"),
    Family("GPT-NeoX (Pythia)", ("gpt_neox",), "gpt_neox.layers", "gpt_neox.final_layer_norm", NEOX_SITES,
           example="EleutherAI/pythia-1.4b"),
    Family("BLOOM", ("bloom",), "transformer.h", "transformer.ln_f", BLOOM_SITES, BLOOM_DERIVED,
           position_ids=False, example="bigscience/bloom-560m"),
    Family("GPT-2", ("gpt2",), "transformer.h", "transformer.ln_f", GPT2_SITES, example="openai-community/gpt2"),
)
_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def family_sites(fam: Family) -> str:
    """The sites of a family, in words (for `dftlens models`)."""
    if fam.model_types == ("gpt_neox",):
        return "all 5; no resid_mid with use_parallel_residual (the default)"
    if fam.derived:
        return f"all 5 ({', '.join(fam.derived)} as residual differences, read-only)"
    return "all 5"


@dataclass
class Architecture:
    """The layout of one loaded model (its family's row, resolved against its config)."""

    family: str
    layers_path: str  # e.g. "model.layers"
    norm_path: str  # e.g. "model.norm"
    sites: Sites  # sites read from a module
    softcap: float | None  # final logit soft-cap (Gemma-2), None when absent
    derived: dict = field(default_factory=dict)  # sites computed as differences of two others
    position_ids: bool = True

    @property
    def available(self) -> tuple[str, ...]:
        """Every site this model has, in execution order."""
        from .hook_points import SITES

        return tuple(s for s in SITES if s in self.sites or s in self.derived)

    def check_site(self, site: str, model: str = "this model") -> None:
        """Return quietly when this model has ``site`` (read from a module or derived).

        Raises:
            LayerError: it has no such site (GPT-NeoX with parallel attention has no ``resid_mid``);
                the message names ``model``, the family and the sites it has.
        """
        if site not in self.sites and site not in self.derived:
            raise LayerError(
                f"{model} ({self.family}) has no {site} site: attention and MLP run in parallel, so its "
                f"sites are {', '.join(self.available)}."
            )


def family_of(config) -> Family | None:
    """The :class:`Family` of a Hugging Face config by ``config.model_type``; None if unsupported."""
    return _BY_TYPE.get(getattr(config, "model_type", None))


def check_supported(config, fallback_name: str = "unknown") -> Family:
    """The config's :class:`Family`; DftlensError (one sentence naming the architecture) if unsupported."""
    fam = family_of(config)
    if fam is None:
        arch = (getattr(config, "architectures", None) or [fallback_name])[0]
        raise DftlensError(
            f"dftlens does not support the {arch} architecture (model_type {getattr(config, 'model_type', '?')!r}); "
            f"supported families: {', '.join(f.name for f in FAMILIES)} (see `dftlens models`)."
        )
    return fam


def describe(hf_model: nn.Module) -> Architecture:
    """The :class:`Architecture` of a Hugging Face causal LM; DftlensError for an unsupported family."""
    config = hf_model.config
    fam = check_supported(config, type(hf_model).__name__)
    sites = dict(fam.sites)
    if fam.model_types == ("gpt_neox",) and getattr(config, "use_parallel_residual", True):
        del sites["resid_mid"]
    return Architecture(
        family=fam.name,
        layers_path=fam.layers_path,
        norm_path=fam.norm_path,
        sites=sites,
        softcap=getattr(config, "final_logit_softcapping", None) or None,
        derived=dict(fam.derived),
        position_ids=fam.position_ids,
    )
