"""What one training run holds between optimizer steps, and how it is set up and saved.

:func:`dftlens.dft.trainer.train` checks the settings, then :meth:`TrainSession.open`
starts the runtime (accelerate), loads tokenizer, data and model, binds the layer
choice, builds AdamW and the DFT loss, and writes the run directory's settings;
:meth:`TrainSession.save` writes a resumable checkpoint or ``final/``;
:meth:`TrainSession.micro_batches` draws one optimizer step's micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config_files import RUN_CONFIG, write_run_config
from ..data.languages import split_list
from ..errors import DftlensError
from ..models.interface import LensModel
from . import checkpoint as ckpt
from .batches import collate
from .config import TrainConfig
from .distributed import Runtime
from .loss_terms import step_norm
from .losses import DFTLoss
from .neuron_mask import read_neuron_file, restrict_to_neurons
from .run_dir import FINAL, prepare_run, read_log, record_saved, remove_leftovers, start_run_dir, write_log


def micro_batch_indices(n: int, seed: int, index: int, size: int) -> list[int]:
    """Examples of global micro-batch ``index``: consecutive slices of per-epoch seeded permutations."""
    out, pos = [], index * size
    while len(out) < size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = perm[offset : offset + size - len(out)].tolist()
        out += take
        pos += len(take)
    return out


def make_optimizer(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW, with the fused kernel where torch has one for these tensors (5x faster on CPU)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@dataclass
class TrainSession:
    """One run's state: settings, runtime, model, optimizer, loss, data and where it writes.

    Fields: ``cfg``; ``dist`` (the accelerate :class:`~dftlens.dft.distributed.Runtime`); ``out`` (the
    run directory); ``start`` (optimizer steps already done, > 0 when resuming) and ``resume_from``
    (the checkpoint resumed, or None); ``lm``; ``examples`` (the encoded training pairs); ``params``
    (the trainable parameters); ``optimizer``; ``loss_fn``; ``lora_config``/``base_path`` (what
    checkpoints record about the base model); ``save_dtype`` (``final/``'s dtype, None: as trained);
    ``log`` (the step records so far); ``record`` (``lc_hook``, ``et_hook``, ``inputs``: what each
    checkpoint's ``run_config.json`` holds besides the settings, set by :meth:`write_start`).
    """

    cfg: TrainConfig
    dist: Runtime
    out: Path
    start: int
    resume_from: Path | None
    lm: LensModel
    examples: list
    params: list
    optimizer: torch.optim.Optimizer
    loss_fn: DFTLoss
    lora_config: object
    base_path: Path
    save_dtype: torch.dtype | None
    log: list[dict]
    record: dict = field(default_factory=dict)

    @classmethod
    def open(cls, cfg: TrainConfig, given: LensModel | None, resume: Path | str | None,
             overwrite: bool) -> "TrainSession":
        """Start the runtime, check the run directory, load data and model and build optimizer and loss.

        ``given``: a model already loaded (see :func:`~dftlens.dft.trainer.train`). Raises DftlensError
        when resuming a finished run, under FSDP with LoRA, or when every parameter is frozen.
        """
        from .prepare import load_tokenizer, load_training_data, model_source

        dist = Runtime.start(cfg.device, cfg.bf16, split_list(cfg.report_to), cfg.out, fsdp=cfg.fsdp)
        if dist.fsdp and cfg.lora:
            raise DftlensError("FSDP shards full fine-tuning; run LoRA with a data-parallel config.")
        out, resume_from = prepare_run(cfg, Path(resume) if resume else None, overwrite, dist.is_main)
        dist.barrier()
        start = ckpt.checkpoint_step(resume_from) if resume_from else 0
        if start >= cfg.steps:
            raise DftlensError(f"{resume_from} is already at step {start} of {cfg.steps}; nothing to do.")
        tokenizer = given.tokenizer if given is not None else load_tokenizer(model_source(cfg, resume_from)[0],
                                                                             cfg.trust_remote_code)
        examples = load_training_data(cfg, tokenizer)
        torch.manual_seed(cfg.seed)
        lm, lora_config, base_path, choice, params, optimizer = _model_and_optimizer(cfg, dist, resume_from, given)
        loss_fn = DFTLoss(lm, choice, lc_signal=cfg.lc_signal, et_signal=cfg.et_signal, w_lc=cfg.w_lc,
                          w_et=cfg.w_et, detach_english=cfg.detach_english, chunk=cfg.ce_chunk,
                          feature_norm=cfg.feature_norm, temperature=cfg.temperature)
        save_dtype = torch.bfloat16 if dist.mixed_precision == "bf16" else None  # final/ in the training dtype
        log = read_log(out, start) if resume_from else []
        return cls(cfg, dist, out, start, resume_from, lm, examples, params, optimizer, loss_fn, lora_config,
                   base_path, save_dtype, log)

    def write_start(self, overwrite: bool) -> None:
        """Replace an earlier run (or clear a killed run's leftovers), write the settings and the log so far.

        Also fixes what checkpoints record next to the settings (:attr:`record`): the hooks trained and the
        sha256 of the input files as they are now (on resume: as checked against the checkpoint's).
        """
        cfg, out = self.cfg, self.out
        self.record = {"lc_hook": self.loss_fn.lc_hook, "et_hook": self.loss_fn.et_hook,
                       "inputs": cfg.input_checksums()}
        if self.dist.is_main:
            if self.resume_from is None:
                start_run_dir(out, overwrite, self.dist.world_size)  # only now is an earlier run replaced
            else:
                remove_leftovers(out)  # a checkpoint half-written when a killed run stopped
            # the run's one settings file (`dftlens train --config` reruns it); the hooks and input checksums
            # go into each checkpoint's run_config.json (see save)
            write_run_config(out / RUN_CONFIG, cfg.to_dict(), "train")
            write_log(out, self.log)
        self.dist.init_trackers(Path(cfg.out).name or "dftlens", cfg.to_dict())

    def save(self, name: str, step: int) -> Path:
        """Write ``out/<name>`` after ``step`` steps: ``final/`` (what from_pretrained needs) or a checkpoint.

        A checkpoint is resumable (full-precision weights, AdamW and RNG state); older ones beyond
        ``keep_checkpoints`` are pruned. Under FSDP every process gathers the sharded weights and writes
        its optimizer shard. Returns the directory written.
        """
        dist, path = self.dist, self.out / name
        state = dist.full_state(self.lm.hf_model) if dist.fsdp else None
        shards = [] if not dist.fsdp or name == FINAL else [
            ckpt.save_optimizer_shard(self.out, self.optimizer, dist.rank)]
        if shards:
            dist.barrier()
            shards = [ckpt.optimizer_shard_path(self.out, r) for r in range(dist.world_size)]
        if dist.is_main:
            if name == FINAL:  # weights (training dtype), tokenizer, run config: what from_pretrained needs
                ckpt.save_final(self.lm, self.cfg, step, path, self.lora_config, self.base_path, self.save_dtype,
                                state, self.record)
            else:  # resumable: full-precision weights, AdamW and RNG state
                ckpt.save_checkpoint(self.lm, self.cfg, step, self.optimizer, path, self.lora_config,
                                     self.base_path, state, shards, self.record)
                ckpt.prune(self.out, self.cfg.keep_checkpoints)
            record_saved(self.out, name)
        dist.barrier()
        return path

    def micro_batches(self, step: int) -> tuple[list, dict]:
        """Optimizer step ``step``'s micro-batches of this process (on the model's device) and the step's norms.

        Every process takes every ``world_size``-th micro-batch; the norms
        (:func:`~dftlens.dft.loss_terms.step_norm`) count the whole step (all micro-batches, all
        processes), so the loss and gradient equal one batch of batch_size x grad_accum x world_size.
        """
        cfg, dist, tok = self.cfg, self.dist, self.lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        batches = []
        for micro in range(cfg.grad_accum):
            index = (step * cfg.grad_accum + micro) * dist.world_size + dist.rank
            pairs = [self.examples[i] for i in micro_batch_indices(len(self.examples), cfg.seed, index,
                                                                   cfg.batch_size)]
            batches.append(collate(pairs, cfg.lc_signal, cfg.et_signal, pad, tok.bos_token_id))
        norm = step_norm(batches, cfg.lc_signal, cfg.et_signal, dist.sum_values)
        return [batch.to(self.lm.device) for batch in batches], norm


def _model_and_optimizer(cfg: TrainConfig, dist: Runtime, resume_from: Path | None, given: LensModel | None):
    """``(lm, lora_config, base_path, choice, params, optimizer)``: the model prepared for training and its AdamW.

    ``choice`` is the run's :class:`~dftlens.layers.LayerChoice` bound to the model. Neuron masks (``--train-neurons``) and FSDP sharding are applied before the parameters are collected;
    a resumed run's AdamW state is loaded. Raises DftlensError when every parameter is frozen.
    """
    from .prepare import load_for_training

    lm, lora_config, base_path = load_for_training(cfg, resume_from, dist.device(), given)
    choice = cfg.layer_choice(lm.n_layers).bind(lm)  # probe -> layers.json -> this model
    if cfg.train_neurons:  # only the chosen neurons' MLP rows/columns train (see dft/neuron_mask.py)
        restrict_to_neurons(lm.hf_model, read_neuron_file(cfg.train_neurons, cfg.neuron_languages()))
    if dist.fsdp:
        dist.shard(lm)  # FSDP2 on the decoder layers; the parameters below are then DTensors
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    if not params:
        raise DftlensError("Nothing to train: every parameter is frozen.")
    # Sharded (DTensor) and replicated parameters in separate groups: AdamW's kernels take one kind at a time.
    groups = params if not dist.fsdp else [
        {"params": [p for p in params if hasattr(p, "to_local")]},
        {"params": [p for p in params if not hasattr(p, "to_local")]}]
    optimizer = make_optimizer(groups, cfg.learning_rate, cfg.weight_decay)
    if resume_from is not None:
        ckpt.load_training_state(resume_from, optimizer, rank=dist.rank if dist.fsdp else None)
    return lm, lora_config, base_path, choice, params, optimizer
