"""How a verb loads its model: the shared settings (:class:`LoadSettings`), devices and dtypes.

The fields every model-loading config inherits (``--device``, ``--dtype``, ``--device-map``,
``--trust-remote-code``), the check of a device name against what torch sees here
(:func:`check_device`) and the dtype policy (:func:`resolve_dtype`: ``auto`` is the
checkpoint's dtype on a GPU, float32 on the CPU). Loading itself is :mod:`.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config_files import check_fields, setting
from ..errors import DftlensError

# The --dtype help of every verb; verbs that decode with the logit lens add LENS_DTYPE_HELP to it.
DTYPE_HELP = "Weights dtype: auto (the checkpoint's on a GPU, float32 on the CPU), float32, bfloat16 or float16."
LENS_DTYPE_HELP = DTYPE_HELP + (" The logit lens's head product runs in it (as the model's own logits), all after "
                                "it in float32.")

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
