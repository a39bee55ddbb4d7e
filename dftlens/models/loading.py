"""Load a model once: the Hugging Face model and tokenizer (:func:`load_hf`), behind an engine (:func:`load_model`).

Before transformers reads a folder: its weights' headers (:func:`check_weights`) and any
Python code it ships (:func:`check_remote_code`). A LoRA adapter is merged on top of its
base (:func:`merge_adapter`). Where a name leads is :mod:`.name_resolution`; the device
and dtype settings :mod:`.load_settings`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DftlensError, ModelNotAvailable
from ..paths import cache_root
from .architecture import check_supported
from .load_settings import check_device, default_device, resolve_dtype
from .name_resolution import resolve

def check_weights(path: Path) -> None:
    """Read the header of every ``*.safetensors`` file: a truncated or empty one is one sentence, not a traceback."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError) as exc:
            detail = str(exc).split(": ", 1)[-1] or type(exc).__name__
            cache = cache_root().resolve()
            if cache in Path(path).resolve().parents:
                raise ModelNotAvailable(f"The cached copy {path} is damaged ({file.name}: {detail}); remove it "
                                        f"with `rm -r {path}` and dftlens rebuilds it on the next run.") from None
            raise ModelNotAvailable(f"{file} is truncated or damaged ({detail}); copy or download the model "
                                    "again.") from None


_WARNED: set[str] = set()  # model folders whose remote-code warning was printed in this process


def check_remote_code(path: Path | str, trust: bool = False) -> bool:
    """Refuse a model folder that ships Python code (``auto_map``) unless ``trust``; True when it ships some.

    Read from ``config.json`` and ``tokenizer_config.json`` before transformers sees the folder,
    so transformers never asks on a terminal whether to run it. With ``trust`` a warning is
    printed on stderr instead.

    Raises:
        DftlensError: the folder has ``auto_map`` and ``trust`` is False.
    """
    import json
    import sys

    shipped = []
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((Path(path) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            shipped.append(name)
    if shipped and not trust:
        raise DftlensError(f"{path} ships its own Python code (auto_map in {shipped[0]}), which dftlens does not "
                           "run; pass --trust-remote-code only if you trust its author (it runs with your "
                           "permissions).")
    if shipped and str(path) not in _WARNED:
        _WARNED.add(str(path))
        sys.stderr.write(f"warning: --trust-remote-code: running the Python code shipped with {path}.\n")
    return bool(shipped)


def load_hf(
    path: Path,
    device: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
):
    """Load the causal LM (eval mode) and tokenizer from a local HF directory.

    ``dtype``: "auto" (checkpoint dtype on GPU, float32 on CPU), "float32",
    "bfloat16", "float16" or a torch dtype. ``device_map`` ("auto" or an
    accelerate map) spreads the layers over the GPUs, then the CPU (accelerate's
    big-model inference); it replaces ``device``. ``trust_remote_code``: run the Python code the
    folder ships (:func:`check_remote_code` refuses such a folder otherwise); passed explicitly to
    every transformers call, and remembered on the model for the engines.
    """
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if device_map is not None and device is not None:
        raise DftlensError("Give --device or --device-map, not both: a device map places every layer itself.")
    check_device(device)
    device = device or default_device()
    check_remote_code(path, trust_remote_code)
    check_weights(Path(path))
    trust = {"trust_remote_code": bool(trust_remote_code)}
    try:
        config = AutoConfig.from_pretrained(path, **trust)
        check_supported(config)  # an unsupported family fails before its weights load
        torch_dtype = resolve_dtype(dtype, "cuda" if device_map is not None and torch.cuda.is_available() else device,
                                    config)
        tokenizer = AutoTokenizer.from_pretrained(path, **trust)
        if device_map is not None:
            _require_accelerate()
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, device_map=device_map,
                                                         **trust).eval()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **trust).to(device).eval()
        model.dftlens_trust_remote_code = bool(trust_remote_code)  # the engines boot with the same decision
    except (OSError, ValueError, StrictDataclassError) as exc:  # e.g. config.json with "hidden_size": "64"
        reason = " ".join(str(exc).split())  # one line, whatever transformers wrote
        raise DftlensError(f"Could not load a causal language model from {path}: {reason}") from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise DftlensError(
                f"{path} does not fit on {device} in {torch_dtype}: try --dtype bfloat16 or --device-map auto."
            ) from None
        raise
    return model, tokenizer


def _require_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise DftlensError("--device-map needs the accelerate package: pip install accelerate.") from None


def merge_adapter(hf_model, adapter: Path):
    """Apply the LoRA adapter in ``adapter`` to ``hf_model`` and merge it into the weights."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(hf_model, str(adapter)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise DftlensError(f"Could not apply the adapter {adapter} to its base model: {exc}") from None


def load_model(
    name: str | None = None,
    backend: str | None = "transformer_lens",
    dtype: str | torch.dtype | None = "auto",
    device: str | None = None,
    device_map: str | dict | None = None,
    remote: bool = False,
    lens_chunk: int | None = None,
    trust_remote_code: bool = False,
):
    """Load ``name`` (alias, Hugging Face id, local directory or .gguf file) once: the one route to a model.

    - ``backend``: the engine that reads activations, "transformer_lens"
      (TransformerBridge) or "nnsight"; None for no engine (evaluation only needs
      the plain Hugging Face model).
    - ``dtype``: "auto" (the checkpoint's dtype on a GPU, float32 on the CPU),
      "float32", "bfloat16", "float16". The logit lens runs its head product in it
      (as the model computes its own logits) and everything after in float32
      (:mod:`dftlens.models.lens_kernel`).
    - ``device``: "cpu", "cuda", "cuda:1" ... (default: cuda when available).
    - ``device_map``: "auto" (accelerate big-model inference: layers spread over
      the GPUs, then the CPU) or an explicit accelerate map; excludes ``device``.
    - ``remote=True`` (nnsight only): run on NDIF; see :mod:`dftlens.models.remote`.
    - ``lens_chunk``: rows (layer x prompt) decoded by the logit lens at once
      (None: sized from a memory budget, see :meth:`LensModel.lens_rows`).
    - ``trust_remote_code``: run the Python code a model folder ships (``auto_map``); without
      it such a folder is refused (:func:`check_remote_code`).

    Raises ModelNotAvailable (unknown or missing model), DftlensError (bad
    backend/dtype, unsupported architecture, no network for remote).
    """
    from .engines import BACKENDS, make_engine
    from .interface import LensModel
    from .aliases import EMBEDDED

    name = name or EMBEDDED
    if backend is not None and backend not in BACKENDS:
        raise DftlensError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if remote:
        if backend != "nnsight":
            raise DftlensError("remote=True (NDIF) needs backend='nnsight'.")
        from .remote import load_remote

        return load_remote(name, lens_chunk=lens_chunk)
    if lens_chunk is not None and lens_chunk < 1:
        raise DftlensError(f"--lens-chunk must be at least 1, not {lens_chunk}.")
    resolved = resolve(name)
    hf_model, tokenizer = load_hf(resolved.path, device, dtype, device_map, trust_remote_code)
    if resolved.adapter is not None:
        hf_model = merge_adapter(hf_model, resolved.adapter).eval()
    engine = None if backend is None else make_engine(backend, hf_model, tokenizer, name, str(resolved.path))
    return LensModel(hf_model, tokenizer, engine, name=name, path=str(Path(resolved.path)), lens_chunk=lens_chunk)
