"""The DFT training loop: AdamW, warm-up and decay, accumulation, clipping, checkpoints.

``train(TrainConfig(...))`` is what ``dftlens train`` runs. One optimizer step
takes ``grad_accum`` micro-batches of ``batch_size`` examples (per process); each
micro-batch runs :meth:`DFTLoss.backward` (every pass's backward before the next
pass). Every loss is normalised by the whole step (:func:`~dftlens.dft.losses.step_norm`):
token means by the loss tokens of all micro-batches of all processes, example
means by their examples, so batch 4, batch 2 x accumulation 2 and 2 processes x
batch 1 x accumulation 2 give the same loss and gradients. The logged components
are the step's means.

Reproducibility: the data order is a function of (seed, step) alone (one seeded
permutation per epoch), the learning rate a function of the step, and a
checkpoint holds the weights (exact float32), the AdamW state and the RNG states,
so ``resume`` continues with the same loss curve as an uninterrupted run on CPU.
Ctrl-C (SIGINT), SIGTERM (what SLURM and Kubernetes send before a kill) and SIGHUP
finish the current step, save a checkpoint and raise :class:`TrainingInterrupted`; a
second one stops at once (:mod:`dftlens.signals`).

The engine is accelerate (:class:`~dftlens.dft.distributed.Runtime`): one CPU or
GPU, or data parallelism under ``accelerate launch`` / ``torchrun`` (each process
holds a full replica, takes every ``world_size``-th micro-batch, and gradients are
averaged before clipping), bf16 mixed precision on GPU, trackers. Checkpoints:
``checkpoint-NNNNNN/`` are resumable (weights, AdamW, RNG); ``final/`` holds only
what ``from_pretrained`` needs (see :mod:`dftlens.dft.checkpoint`); the run directory and
the step log are :mod:`dftlens.dft.run_dir`.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..config_files import RUN_CONFIG, write_run_config
from ..data.languages import split_list
from ..errors import DftlensError, NonFiniteError
from ..numerics import check_step, stopped_at
from ..io import claim_output, write_json
from ..models.interface import LensModel
from ..signals import stop_flag
from . import checkpoint as ckpt
from .batches import collate
from .config import TrainConfig
from .distributed import Runtime
from .loss_terms import step_norm
from .losses import DFTLoss
from .neuron_mask import read_neuron_file, restrict_to_neurons
from .run_dir import (FINAL, append_log, check_run_out, prepare_run, read_log, record_saved, remove_leftovers,
                      start_run_dir, write_log)



class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during training; ``checkpoint`` is where the state was saved.

    ``signum``: the signal (the CLI exits with 128 + it, see :func:`dftlens.signals.exit_code`).
    """

    def __init__(self, step: int, checkpoint: Path, signum: int = signal.SIGINT):
        """Interrupted by ``signum`` after optimizer step ``step``; the state was saved at ``checkpoint``."""
        super().__init__(f"interrupted after step {step}")
        self.step, self.checkpoint, self.signum = step, checkpoint, int(signum)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Fields: ``out`` (the run directory), ``final`` (its ``final/`` model directory), ``log`` (one
    record per optimizer step: ``step``, the loss terms and per-component gradient norms, ``lr``,
    ``grad_norm``, ``seconds``), ``main`` (False in the other processes of a multi-process run).
    """

    out: Path
    final: Path
    log: list[dict] = field(default_factory=list)
    main: bool = True  # False in the other processes of a multi-process run

    def to_dataframe(self):
        """The step log as a DataFrame, one row per optimizer step."""
        import pandas as pd

        return pd.DataFrame(self.log)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then the schedule."""
    warmup = max(1, math.ceil(cfg.warmup_ratio * cfg.steps)) if cfg.warmup_ratio > 0 else 0
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    if cfg.schedule == "cosine":
        return cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "linear":
        return cfg.learning_rate * (1 - progress)
    return cfg.learning_rate


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


def train(cfg: TrainConfig, lm: LensModel | None = None, resume: Path | str | None = None, overwrite: bool = False,
          on_step: Callable[[dict], None] | None = None, progress: bool = True,
          on_warning: Callable[[str], None] | None = None) -> TrainResult:
    """Run DFT as ``cfg`` says; ``resume`` is a run directory or checkpoint to continue from.

    ``lm``: an already-loaded :class:`~dftlens.models.LensModel` to train instead of loading
    ``cfg.model`` (as TRL's trainers take a name or a model). Its weights are trained in
    place (with ``cfg.lora``, the adapter is injected into ``lm.hf_model``); ``cfg.model``
    is set to ``lm.name``, which the run directory records. It must be on the run's device
    and, unless ``cfg.dtype`` is ``auto``, in ``cfg.dtype``; it cannot be combined with
    ``resume`` (a resumed run loads its checkpoint's weights). Raises DftlensError otherwise.

    Everything checkable without the model is checked first (values, layers file,
    layer order, --out). The run directory is locked while training (a second
    process writing it is refused), data and layers paths are saved absolute with
    their sha256, and a resume whose inputs changed is refused, naming the file. A
    provisional ``layers.json`` (``LayerChoice.warning``) is used, with a warning: passed to
    ``on_warning`` (a ``str -> None`` callable), or a :class:`~dftlens.layers.ProvisionalLayers`
    warning when None.
    """
    from ..layers import model_n_layers

    if lm is not None:
        if resume is not None:
            raise DftlensError("A resumed run loads its checkpoint's weights: pass no lm with resume.")
        cfg = replace(cfg, model=lm.name)
        from .prepare import check_given

        check_given(lm, cfg, cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    choice = cfg.validate(lm.n_layers if lm is not None else model_n_layers(cfg.model))  # values, layers file, order: before anything is deleted or loaded
    if choice is not None and choice.warning():  # a provisional probe: say so, and train anyway
        if on_warning is None:
            import warnings

            from ..layers import ProvisionalLayers

            warnings.warn(choice.warning(), ProvisionalLayers, stacklevel=2)
        else:
            on_warning(choice.warning())
    if resume is None:
        cfg = cfg.with_absolute_paths()
        check_run_out(Path(cfg.out), overwrite)  # before the lock creates anything
    main = os.environ.get("RANK", "0") == "0"  # set by accelerate launch / torchrun; only rank 0 writes
    with claim_output(cfg.out, check=False) if main else nullcontext():
        return _train(cfg, lm, resume, overwrite, on_step, progress)


def _train(cfg: TrainConfig, given: LensModel | None, resume: Path | str | None, overwrite: bool,
           on_step: Callable[[dict], None] | None, progress: bool) -> TrainResult:
    from .prepare import densify_grads, load_for_training, load_tokenizer, load_training_data, model_source

    report_to = split_list(cfg.report_to)
    dist = Runtime.start(cfg.device, cfg.bf16, report_to, cfg.out, fsdp=cfg.fsdp)
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
    loss_fn = DFTLoss(lm, choice, lc_signal=cfg.lc_signal, et_signal=cfg.et_signal, w_lc=cfg.w_lc, w_et=cfg.w_et,
                      detach_english=cfg.detach_english, chunk=cfg.ce_chunk, feature_norm=cfg.feature_norm,
                      temperature=cfg.temperature)
    autocast = dist.autocast  # bf16 autocast from accelerate on GPU; nothing on CPU
    save_dtype = torch.bfloat16 if dist.mixed_precision == "bf16" else None  # final/ in the training dtype
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    log = read_log(out, start) if resume_from else []
    if dist.is_main:
        if resume_from is None:
            start_run_dir(out, overwrite, dist.world_size)  # only now is an earlier run replaced
        else:
            remove_leftovers(out)  # a checkpoint half-written when a killed run stopped
        write_json(out / "run_config.json", {**cfg.to_dict(), "lc_hook": loss_fn.lc_hook, "et_hook": loss_fn.et_hook,
                                             "inputs": cfg.input_checksums()})
        write_run_config(out / RUN_CONFIG, cfg.to_dict(), "train")  # `dftlens train --config` reruns it
        write_log(out, log)
    dist.init_trackers(Path(cfg.out).name or "dftlens", cfg.to_dict())

    def save(name: str, step: int) -> Path:
        path = out / name
        # Under FSDP every process gathers the sharded weights and writes its optimizer shard.
        state = dist.full_state(lm.hf_model) if dist.fsdp else None
        shards = [] if not dist.fsdp or name == FINAL else [ckpt.save_optimizer_shard(out, optimizer, dist.rank)]
        if shards:
            dist.barrier()
            shards = [ckpt.optimizer_shard_path(out, r) for r in range(dist.world_size)]
        if dist.is_main:
            if name == FINAL:  # weights (training dtype), tokenizer, run config: what from_pretrained needs
                ckpt.save_final(lm, cfg, step, path, lora_config, base_path, save_dtype, state)
            else:  # resumable: full-precision weights, AdamW and RNG state
                ckpt.save_checkpoint(lm, cfg, step, optimizer, path, lora_config, base_path, state, shards)
                ckpt.prune(out, cfg.keep_checkpoints)
            record_saved(out, name)
        dist.barrier()
        return path

    bar = _progress(cfg.steps, start, progress and dist.is_main)
    lm.hf_model.train()
    with stop_flag("finishing this step and saving a checkpoint (send it again to stop now).") as stop:
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            lr = lr_at(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro_batches = []
            for micro in range(cfg.grad_accum):  # every process takes every world_size-th micro-batch
                index = (step * cfg.grad_accum + micro) * dist.world_size + dist.rank
                pairs = [examples[i] for i in micro_batch_indices(len(examples), cfg.seed, index, cfg.batch_size)]
                micro_batches.append(collate(pairs, cfg.lc_signal, cfg.et_signal, pad, tok.bos_token_id))
            # Every mean is over the whole step (all micro-batches, all processes): the same
            # loss and gradient as one batch of batch_size x grad_accum x world_size examples.
            norm = step_norm(micro_batches, cfg.lc_signal, cfg.et_signal, dist.sum_values)
            micro_batches = [batch.to(lm.device) for batch in micro_batches]
            if loss_fn.contrastive:  # candidates: every example of the step, all micro-batches and processes
                with autocast():
                    loss_fn.prepare_step(micro_batches, gather=dist.gather_rows if dist.world_size > 1 else None)
            sums: dict[str, float] = {}
            keep = functools.partial(_keep_finite, save, out, step, start, resume_from, optimizer)
            try:
                for micro, batch in enumerate(micro_batches):
                    # x world_size: the gradient average over processes then yields the step's sum
                    values = loss_fn.backward(batch, scale=dist.world_size, autocast=autocast, norm=norm,
                                              micro=micro)
                    for k, v in values.items():
                        # loss shares add up; a gradient norm over the step's rows is the root of summed squares
                        sums[k] = sums.get(k, 0.0) + (v * v if k.endswith("_gnorm") else v)
            except NonFiniteError as exc:  # activations or logits checked inside the passes
                bar.close()
                raise stopped_at(step + 1, exc, keep) from None
            densify_grads(params)
            dist.average_gradients(params)
            sums = dist.sum_values(sums)
            sums = {k: (math.sqrt(v) if k.endswith("_gnorm") else v) for k, v in sums.items()}
            clip = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
            grad_norm = dist.clip_grad_norm(params, clip)
            if not (all(math.isfinite(v) for v in sums.values()) and math.isfinite(float(grad_norm))):
                bar.close()
                check_step(sums, float(grad_norm), step + 1, keep)  # raises, after keeping the last finite state
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, **{k: round(v, 6) for k, v in sums.items()}, "lr": lr,
                      "grad_norm": round(float(grad_norm), 6), "seconds": round(time.perf_counter() - t0, 3)}
            log.append(record)
            if dist.is_main:
                append_log(out, record)
            dist.log(record, step + 1)
            bar.update(1)
            bar.set_postfix(_running(log), refresh=False)
            if on_step is not None:
                on_step(record)
            done = step + 1
            if dist.any(stop["set"]) and done < cfg.steps:
                bar.close()
                raise TrainingInterrupted(done, save(f"checkpoint-{done:06d}", done), stop["signum"] or signal.SIGINT)
            if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
                save(f"checkpoint-{done:06d}", done)
    bar.close()
    final = save(FINAL, cfg.steps)
    dist.end()
    return TrainResult(out, final, log, dist.is_main)


def _keep_finite(save: Callable[[str, int], Path], out: Path, step: int, start: int, resume_from: Path | None,
                 optimizer: torch.optim.Optimizer) -> str:
    """Save the weights before step ``step`` (0-based; the last finite state) and say where they are."""
    optimizer.zero_grad(set_to_none=True)  # the non-finite gradients are never applied
    if step > start:
        path = out / f"checkpoint-{step:06d}"
        if not path.exists():  # not saved by --save-every already
            path = save(path.name, step)
        return f"the last finite state (after step {step}) is kept in {path}"
    if resume_from is not None:
        return f"the last finite state is {resume_from}, as it was"
    return "no step had finished, so no checkpoint was written (lower --lr or check the model and data)"


def _running(log: list[dict], window: int = 10) -> dict[str, str]:
    """The progress bar's postfix: each loss as its mean over the last ``window`` logged steps,
    named so (``loss_mean10``), since the table printed at the end shows single steps."""
    recent = log[-window:]
    keys = [k for k in ("loss", "tft", "lc", "et") if k in recent[-1]]
    return {f"{k}_mean{window}": f"{sum(r[k] for r in recent) / len(recent):.3f}" for k in keys}


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="dft", unit="step", disable=not enabled, dynamic_ncols=True)


