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

from ..errors import DftlensError, NonFiniteError
from ..output_dirs import claim_output
from ..models.interface import LensModel
from ..numerics import check_step, stopped_at
from ..signals import stop_flag
from .config import TrainConfig
from .run_dir import FINAL, append_log, check_run_out
from .session import TrainSession



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
    process writing it is refused), data and layers paths are saved absolute (``run_config.yaml``),
    each checkpoint records their sha256, and a resume whose inputs changed is refused, naming the file. A
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
    """The loop: open the session, run the steps, save checkpoints as asked and ``final/`` at the end."""
    run = TrainSession.open(cfg, given, resume, overwrite)
    run.write_start(overwrite)
    bar = _progress(cfg.steps, run.start, progress and run.dist.is_main)
    run.lm.hf_model.train()
    try:
        with stop_flag("finishing this step and saving a checkpoint (send it again to stop now).") as stop:
            for step in range(run.start, cfg.steps):
                record = _step(run, step)
                bar.update(1)
                bar.set_postfix(_running(run.log), refresh=False)
                if on_step is not None:
                    on_step(record)
                done = step + 1
                if run.dist.any(stop["set"]) and done < cfg.steps:
                    bar.close()
                    raise TrainingInterrupted(done, run.save(f"checkpoint-{done:06d}", done),
                                              stop["signum"] or signal.SIGINT)
                if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps:
                    run.save(f"checkpoint-{done:06d}", done)
    finally:
        bar.close()
    final = run.save(FINAL, cfg.steps)
    run.dist.end()
    return TrainResult(run.out, final, run.log, run.dist.is_main)


def _step(run: TrainSession, step: int) -> dict:
    """Optimizer step ``step`` (0-based): forward/backward of its micro-batches, clipping, AdamW; its log record.

    Raises NonFiniteError (after keeping the last finite state, :func:`_keep_finite`) when an activation,
    a loss or the gradient norm is not finite; the optimizer never applies that step.
    """
    from .prepare import densify_grads

    cfg, dist, loss_fn = run.cfg, run.dist, run.loss_fn
    t0 = time.perf_counter()
    lr = lr_at(cfg, step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    micro_batches, norm = run.micro_batches(step)
    if loss_fn.contrastive:  # candidates: every example of the step, all micro-batches and processes
        with dist.autocast():
            loss_fn.prepare_step(micro_batches, gather=dist.gather_rows if dist.world_size > 1 else None)
    sums: dict[str, float] = {}
    keep = functools.partial(_keep_finite, run.save, run.out, step, run.start, run.resume_from, run.optimizer)
    try:
        for micro, batch in enumerate(micro_batches):
            # x world_size: the gradient average over processes then yields the step's sum
            values = loss_fn.backward(batch, scale=dist.world_size, autocast=dist.autocast, norm=norm, micro=micro)
            for k, v in values.items():
                # loss shares add up; a gradient norm over the step's rows is the root of summed squares
                sums[k] = sums.get(k, 0.0) + (v * v if k.endswith("_gnorm") else v)
    except NonFiniteError as exc:  # activations or logits checked inside the passes
        raise stopped_at(step + 1, exc, keep) from None
    densify_grads(run.params)
    dist.average_gradients(run.params)
    sums = {k: (math.sqrt(v) if k.endswith("_gnorm") else v) for k, v in dist.sum_values(sums).items()}
    grad_norm = dist.clip_grad_norm(run.params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
    if not (all(math.isfinite(v) for v in sums.values()) and math.isfinite(float(grad_norm))):
        check_step(sums, float(grad_norm), step + 1, keep)  # raises, after keeping the last finite state
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    record = {"step": step + 1, **{k: round(v, 6) for k, v in sums.items()}, "lr": lr,
              "grad_norm": round(float(grad_norm), 6), "seconds": round(time.perf_counter() - t0, 3)}
    run.log.append(record)
    if dist.is_main:
        append_log(run.out, record)
    dist.log(record, step + 1)
    return record


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


