"""Checkpoints: Hugging Face directories plus what resuming needs. Resume logic lives here.

Layout of a resumable ``<out>/checkpoint-000010/``::

    config.json, model*.safetensors, generation_config.json   the model, float32
        (merged LoRA by default; with --save-adapter adapter_config.json and
        adapter_model.safetensors instead, for peft / transformers to apply
        on the base model)
    tokenizer files
    run_config.json                   the TrainConfig of the run, the hooks trained and
                                      the sha256 of its input files (checked on resume)
    trainer_state/state.json          step
    trainer_state/optimizer.pt        AdamW state, RNG states
    trainer_state/trainable.safetensors   the LoRA weights exactly (LoRA runs)

``<out>/final/`` holds only what ``from_pretrained`` needs: the weights in the
training dtype (bf16 after bf16 mixed precision, else float32; safetensors
shards of at most 5 GB), the tokenizer, and ``run_config.json`` (as in a checkpoint, with
``completed_steps``); no optimizer, scheduler or RNG state. A LoRA adapter's
``base_model_name_or_path`` is the base model's Hugging Face id where one is
known (an alias or an id), else its local directory. Files are 0644.

Each checkpoint is written into a hidden temporary directory next to it and
renamed into place, so an interruption leaves the previous checkpoint intact.
An engine may wrap the model's modules in place; the saved names are the
model's own (:func:`dftlens.models.engines.hf_name`, LoRA merged).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import DftlensError
from ..io import ensure_disk_space, write_json
from ..models.engines import hf_name

STATE = "trainer_state"


def clean(name: str) -> str:
    """A parameter or module name as Hugging Face spells it (:func:`~dftlens.models.engines.hf_name`)."""
    return hf_name(name)


def _lora_layers(hf_model) -> dict[str, object]:
    from peft.tuners.lora import LoraLayer

    return {clean(n): m for n, m in hf_model.named_modules() if isinstance(m, LoraLayer)}


def model_state_dict(hf_model, merge_lora: bool = True, state: dict | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under its own Hugging Face names, LoRA merged in.

    ``state``: the module's state dict when it was gathered already (FSDP), else read here.
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        expected = AutoModelForCausalLM.from_config(hf_model.config).state_dict().keys()
    source = state if state is not None else hf_model.state_dict()
    state = {}
    for name, tensor in source.items():
        name = clean(name).replace(".base_layer.", ".")
        if name in expected:
            state[name] = tensor.detach()
    if merge_lora:
        for name, layer in _lora_layers(hf_model).items():
            base = layer.get_base_layer().weight.detach()
            state[f"{name}.weight"] = base + layer.get_delta_weight("default").detach().to(base.dtype)
    missing = [k for k in expected if k not in state]
    if missing:
        raise DftlensError(f"Could not map the trained weights back to the model's names (missing {missing[:3]}).")
    return state


def trainable_state(hf_model) -> dict[str, torch.Tensor]:
    """The parameters that require a gradient (the LoRA weights in a LoRA run), detached, under clean names."""
    return {clean(n): p.detach().contiguous() for n, p in hf_model.named_parameters() if p.requires_grad}


def load_trainable(hf_model, path: Path) -> None:
    """Copy the saved trainable parameters at ``path`` (safetensors) into ``hf_model`` in place.

    Raises:
        DftlensError: the saved names differ from this model's trainable parameters (another
            LoRA rank, targets or model).
    """
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = {clean(n): p for n, p in hf_model.named_parameters() if p.requires_grad}
    if saved.keys() != params.keys():
        raise DftlensError(f"{path} does not match this run's trainable parameters; resume with the same settings.")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def save_model_dir(lm, directory: Path, adapter: bool, lora_config=None, base_path: str | None = None,
                   dtype: torch.dtype | None = None, state: dict | None = None) -> None:
    """A directory ``AutoModelForCausalLM.from_pretrained`` loads (model or adapter) plus the tokenizer.

    ``dtype``: cast the weights (None: as they are, float32 master weights).
    """
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    from transformers import AutoModelForCausalLM

    hf = lm.hf_model
    if adapter:
        from safetensors.torch import save_file

        weights = {f"base_model.model.{k.replace('.default.', '.')}": cast(v).contiguous()
                   for k, v in trainable_state(hf).items()}
        save_file(weights, str(directory / "adapter_model.safetensors"))
        lora_config.base_model_name_or_path = base_path
        lora_config.save_pretrained(str(directory))
    else:
        from transformers.utils import logging as hf_logging

        with torch.device("meta"):
            shell = AutoModelForCausalLM.from_config(hf.config)
        shell.generation_config = hf.generation_config
        shell.config.dtype = dtype or torch.float32
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # it would break the training progress bar
        try:
            weights = {k: cast(v) for k, v in model_state_dict(hf, state=state).items()}
            shell.save_pretrained(str(directory), state_dict=weights, max_shard_size="5GB")
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    lm.tokenizer.save_pretrained(str(directory))


def rng_state() -> dict:
    """The torch, Python ``random`` and (when there is a GPU) CUDA generator states, for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore generator states saved by :func:`rng_state` (CUDA only when saved and available)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def _atomic_dir(directory: Path, n_bytes: int):
    """Yield a temporary sibling of ``directory``; on success make it readable (0644/0755) and rename it in."""
    directory = Path(directory)
    ensure_disk_space(directory.parent, needed_bytes=n_bytes + (64 << 20))
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _model_bytes(lm) -> int:
    return sum(t.numel() * t.element_size() for t in lm.hf_model.parameters())


def save_checkpoint(lm, cfg, step: int, optimizer, directory: Path, lora_config=None, base_path=None,
                    state: dict | None = None, optimizer_shards: list[Path] | None = None,
                    record: dict | None = None) -> Path:
    """Write a resumable checkpoint to ``directory`` atomically (temporary sibling, then rename).

    ``state``: gathered weights (FSDP); ``optimizer_shards``: each process's optimizer
    and RNG file (:func:`save_optimizer_shard`), moved in instead of one optimizer.pt.
    ``record``: what the run records next to its settings in ``run_config.json`` (``lc_hook``,
    ``et_hook``, ``inputs``: the checksums a resume checks).
    """
    from safetensors.torch import save_file

    with _atomic_dir(directory, 3 * _model_bytes(lm)) as tmp:
        (tmp / STATE).mkdir()
        save_model_dir(lm, tmp, adapter=cfg.save_adapter, lora_config=lora_config, base_path=base_path, state=state)
        write_json(tmp / "run_config.json", {**cfg.to_dict(), **(record or {})})
        write_json(tmp / STATE / "state.json", {"step": step, "steps": cfg.steps,
                                                "optimizer_shards": len(optimizer_shards or [])})
        if optimizer_shards:
            for rank, shard in enumerate(optimizer_shards):
                os.replace(shard, tmp / STATE / f"optimizer-rank{rank}.pt")
        else:
            torch.save({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tmp / STATE / "optimizer.pt")
        if cfg.lora:
            save_file(trainable_state(lm.hf_model), str(tmp / STATE / "trainable.safetensors"))
    return Path(directory)


def save_final(lm, cfg, step: int, directory: Path, lora_config=None, base_path=None,
               dtype: torch.dtype | None = None, state: dict | None = None, record: dict | None = None) -> Path:
    """Write ``final/``: weights in ``dtype``, tokenizer, run config; nothing only resuming needs.

    ``record``: as for :func:`save_checkpoint`, added to ``run_config.json`` with ``completed_steps``.
    """
    with _atomic_dir(directory, _model_bytes(lm)) as tmp:
        save_model_dir(lm, tmp, adapter=cfg.save_adapter, lora_config=lora_config, base_path=base_path, dtype=dtype,
                       state=state)
        write_json(tmp / "run_config.json", {**cfg.to_dict(), **(record or {}), "completed_steps": step})
    return Path(directory)


def optimizer_shard_path(out: Path, rank: int) -> Path:
    """The hidden file in ``out`` where process ``rank`` writes its optimizer shard for a checkpoint."""
    return Path(out) / f".optimizer-rank{rank}.pt"


def save_optimizer_shard(out: Path, optimizer, rank: int) -> Path:
    """This process's AdamW state (sharded tensors as their local pieces) and RNG, for an FSDP checkpoint."""
    state = optimizer.state_dict()  # its per-parameter dicts are the live ones: copy, never edit them
    state["state"] = {index: {key: (value.to_local() if hasattr(value, "to_local") else value)
                              for key, value in entry.items()} for index, entry in state["state"].items()}
    path = optimizer_shard_path(out, rank)
    torch.save({"optimizer": state, "rng": rng_state()}, path)
    return path


def load_training_state(directory: Path, optimizer, rank: int | None = None) -> None:
    """Restore AdamW and the RNG states from a resumable checkpoint (weights are loaded with the model).

    ``rank``: under FSDP, this process's shard (same number of processes as when saved).
    """
    directory = Path(directory)
    shards = json.loads((directory / STATE / "state.json").read_text()).get("optimizer_shards", 0) \
        if (directory / STATE / "state.json").exists() else 0
    if (rank is None) != (shards == 0):
        raise DftlensError(f"{directory} was saved {'with' if shards else 'without'} FSDP sharding; resume it the "
                           "same way (same launch config and number of processes).")
    path = directory / STATE / (f"optimizer-rank{rank}.pt" if rank is not None else "optimizer.pt")
    if not path.exists():
        raise DftlensError(f"{directory} holds no optimizer state for this process (final/ keeps only the model; "
                           "resume from a checkpoint-NNNNNN directory with as many processes as saved it).")
    saved = load_state_file(path)
    state = saved["optimizer"]
    if rank is not None:  # local pieces back into sharded tensors, placed like their parameters
        from torch.distributed.tensor import DTensor

        params = [p for group in optimizer.param_groups for p in group["params"]]
        for index, entry in state["state"].items():
            p = params[int(index)]
            if isinstance(p, DTensor):
                for key, value in entry.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        entry[key] = DTensor.from_local(value, p.device_mesh, p.placements)
    optimizer.load_state_dict(state)
    set_rng_state(saved["rng"])


def load_state_file(path: Path) -> dict:
    """A ``torch.save``d training state (AdamW, RNG), read with ``weights_only=True``.

    Tensors, numbers, strings and containers only: nothing in the file can run code when loaded
    (a pickled object would otherwise be executed by ``torch.load``).

    Raises:
        DftlensError: the file needs more than that (it was tampered with or not written by
            dftlens), or it is damaged.
    """
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise DftlensError(f"{path} holds objects other than tensors and numbers, which dftlens never saves; "
                           "it was not written by dftlens (or was changed), so it is not loaded.") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise DftlensError(f"{path} cannot be read ({str(exc).splitlines()[0][:120]}); resume from another "
                           "checkpoint.") from None


def checkpoint_step(directory: Path) -> int | None:
    """The optimizer steps a checkpoint (or a ``final/``) holds; None if it is not one."""
    directory = Path(directory)
    try:
        return int(json.loads((directory / STATE / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        return int(json.loads((directory / "run_config.json").read_text())["completed_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint with the highest step in a run directory (or the checkpoint itself)."""
    run_dir = Path(run_dir)
    if checkpoint_step(run_dir) is not None:
        return run_dir
    found = [(checkpoint_step(d), d) for d in run_dir.glob("*") if d.is_dir() and not d.name.startswith(".")]
    found = [(s, d) for s, d in found if s is not None]
    if not found:
        raise DftlensError(f"{run_dir} holds no dftlens checkpoint to resume from.")
    return max(found, key=lambda sd: (sd[0], sd[1].name == "final"))[1]


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` intermediate checkpoints (``final`` always stays)."""
    found = sorted((d for d in run_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", d.name)
                    and not d.is_symlink() and checkpoint_step(d) is not None), key=lambda d: d.name)
    for directory in found[:-keep] if keep else found:
        shutil.rmtree(directory, ignore_errors=True)
