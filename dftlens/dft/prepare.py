"""Prepare what a run trains: the data (checked first, it is cheap) and the model (full, LoRA, frozen parts).

The model comes through :func:`dftlens.load_model` (the one route: aliases, GGUF,
local directories, adapters, dtype, device), without an engine; LoRA, frozen
embeddings, gradient checkpointing and sparse embedding gradients are applied,
then the engine is built over the model as it trains.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.instruction_files import load_instructions
from ..data.instructions import EncodedPair, PromptFormat, encode_pairs
from ..data.languages import split_list
from ..errors import DftlensError
from ..models import load_model, resolve
from ..models.interface import LensModel
from ..models.engines import unwrap
from . import checkpoint as ckpt
from .config import TrainConfig


def model_source(cfg: TrainConfig, resume_from: Path | None) -> tuple[Path, Path]:
    """(directory to load weights from, directory of the base model)."""
    base = Path(resolve(cfg.model).path)
    full_weights = resume_from is not None and not cfg.lora
    return (resume_from if full_weights else base), base


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    """The tokenizer saved in directory ``path`` (``trust_remote_code``: as :func:`~dftlens.models.load_model`).

    Raises:
        DftlensError: transformers cannot load one from there (the message includes its reason).
    """
    from transformers import AutoTokenizer

    from ..models.loading import check_remote_code

    check_remote_code(path, trust_remote_code)  # before transformers could ask on a terminal
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise DftlensError(f"Could not load a tokenizer from {path}: {exc}") from None


def load_training_data(cfg: TrainConfig, tokenizer) -> list[EncodedPair]:
    """Every example tokenised and checked (fields, language, length) before training starts."""
    data = load_instructions(cfg.data, cfg.lang, cfg.limit)
    return encode_pairs(data, PromptFormat(tokenizer, cfg.template), cfg.max_length, cfg.drop_long)


def lora_config(cfg: TrainConfig):
    """The peft ``LoraConfig`` of a run: rank, alpha, dropout and target modules from ``cfg``, no bias."""
    from peft import LoraConfig

    targets = split_list(cfg.lora_targets)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def load_for_training(cfg: TrainConfig, resume_from: Path | None, device: str, given: LensModel | None = None):
    """The LensModel to train (``cfg.dtype`` weights, float32 by default), its LoRA config (or None) and the base path.

    ``given``: an already-loaded model to prepare instead (checked with :func:`check_given`); its
    ``hf_model`` is changed in place (LoRA, frozen embeddings, checkpointing).
    """
    if given is None:
        source, base = model_source(cfg, resume_from)
        # The one route to a model (load_model), without an engine yet: LoRA and the other
        # changes below come first, then the engine is built over the model as it will train.
        loaded = load_model(cfg.model if source == base else str(source), backend=None, dtype=cfg.dtype,
                            device=device, trust_remote_code=cfg.trust_remote_code)
    else:
        loaded = given  # checked by train (check_given) before the run directory is touched
        source = base = Path(given.path or given.name)
    hf_model, tokenizer = loaded.hf_model, loaded.tokenizer
    config = None
    if cfg.lora:
        from peft import inject_adapter_in_model

        config = lora_config(cfg)
        try:
            hf_model = inject_adapter_in_model(config, hf_model)
        except ValueError as exc:
            raise DftlensError(f"--lora-targets {cfg.lora_targets!r} do not fit this model: {exc}") from None
        if resume_from is not None:
            ckpt.load_trainable(hf_model, resume_from / ckpt.STATE / "trainable.safetensors")
    if cfg.freeze_embeddings:
        hf_model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.gradient_checkpointing:
        # non-reentrant: works with frozen inputs (LoRA) and with the engines' hooks, which
        # are gone by the time the backward pass recomputes a block
        if hasattr(hf_model, "activation_checkpointing_enable"):  # transformers >= 5.x
            hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    sparse_embedding_grads(hf_model)
    if given is not None and given.engine is not None:
        return given, config, base_model_id(cfg.model, base)  # checked: no LoRA, nothing to rebuild
    lm = LensModel(hf_model, tokenizer, None, name=cfg.model, path=str(source)).with_backend(cfg.backend)
    return lm, config, base_model_id(cfg.model, base)


def check_given(lm: LensModel, cfg: TrainConfig, device: str) -> LensModel:
    """``lm`` if it can train as ``cfg`` says on ``device``: same device type, ``cfg.dtype`` (unless ``auto``).

    A model loaded without an engine (``load_model(..., backend=None)``) is prepared like
    one loaded by name (LoRA, frozen embeddings, checkpointing, then the engine). One with an
    engine already wraps its modules, so it trains as loaded: ``cfg.backend``'s engine, and
    no LoRA, frozen embeddings or gradient checkpointing.

    Raises:
        DftlensError: it is elsewhere, in another dtype or behind an engine that cannot be
        prepared (the sentence says how to load it).
    """
    from ..models.load_settings import resolve_dtype

    changes = [name for name in ("lora", "freeze_embeddings", "gradient_checkpointing") if getattr(cfg, name)]
    if lm.engine is not None and (lm.backend != cfg.backend or changes):
        what = f"backend {lm.backend}, not {cfg.backend}" if lm.backend != cfg.backend else ", ".join(changes)
        raise DftlensError(f"A model loaded with an engine trains as loaded ({what}): load it with "
                           "load_model(..., backend=None) and train prepares it.")

    param = next(lm.hf_model.parameters())
    if param.device.type != torch.device(device).type:
        raise DftlensError(f"The model is on {param.device} but the run trains on {device}: load it with "
                           f"device={device!r} or set the config's device.")
    wanted = resolve_dtype(cfg.dtype, device)
    if cfg.dtype != "auto" and param.dtype != wanted:
        raise DftlensError(f"The model's weights are {str(param.dtype).removeprefix('torch.')} but the run trains in "
                           f"{cfg.dtype}: load it with dtype={cfg.dtype!r} or set the config's dtype.")
    return lm


def base_model_id(name: str, path: Path) -> str:
    """What a saved adapter names as its base: the Hugging Face id where one is known, else the directory."""
    from ..models.aliases import lookup

    spec = lookup(name)
    if spec is not None and spec.hf_id:
        return spec.hf_id
    if "/" in name and not Path(name).expanduser().exists() and not name.endswith(".gguf"):
        return name  # a Hugging Face id, resolved from the local cache
    return str(path)


def sparse_embedding_grads(hf_model) -> None:
    """Let each pass's input lookup send a sparse gradient to the embedding matrix.

    A dense lookup gradient is a zero-filled vocab x d matrix per forward pass (671 MB
    for Gemma-3's 262k vocabulary, three times per DFT-logits step); a sparse one
    holds only the rows of the tokens seen. :func:`densify_grads` turns the
    accumulated gradient dense again before clipping and the optimizer step.
    """
    emb = hf_model.get_input_embeddings()
    emb = unwrap(emb)
    if isinstance(emb, torch.nn.Embedding) and emb.weight.requires_grad:
        emb.sparse = True


def densify_grads(params) -> None:
    """Turn sparse gradients (the embedding's, see :func:`sparse_embedding_grads`) dense, in place."""
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.to_dense()
