"""One process or several, on accelerate: what the trainer needs to know about its peers.

:class:`Runtime` wraps ``accelerate.Accelerator``, the one code path for one CPU,
one GPU and data parallelism over N processes (``accelerate launch`` with a
config from ``configs/accelerate/``, or ``torchrun``; one machine or several).
It owns the process group, the device, bf16 mixed precision (``Accelerator(
mixed_precision="bf16")`` autocast on a GPU; float32 on the CPU), the reductions
the trainer needs (gradient average, loss sums, the Ctrl-C flag) and the
experiment trackers (``--report-to tensorboard|wandb``).

Data parallelism: each process holds a full replica and takes every
``world_size``-th micro-batch; after the step's micro-batches the gradients are
averaged with ``Accelerator.reduce`` over flat buckets (one collective per ~256
MB, not one per parameter). DFT runs several forward passes per step, some of
them stopping at layer i (the logits losses), so the model is not wrapped in
``DistributedDataParallel``, whose reducer expects one full forward per backward.
On 8 GPUs of one machine::

    accelerate launch --config_file configs/accelerate/ddp_8gpu.yaml -m dftlens_cli train \\
        --model llama2-7b --layers runs/probe-llama2/layers.json --lang zh \\
        --lc feature --et logits --lora --batch-size 4 --grad-accum 4 --out runs/dft-llama2-zh

(``--batch-size`` is per process: 8 x 4 x 4 = 128 examples per step, the
paper's batch.) Memory per GPU for a 7B model: bf16 autocast over float32 master
weights needs ~28 GB for the weights; LoRA fits an 80 GB GPU per replica. Full
fine-tuning of 7B with AdamW (~112 GB of weights, gradients and optimizer state)
needs the state sharded (FSDP2 / DeepSpeed ZeRO-3): ``configs/accelerate/
fsdp2_8gpu_7b.yaml`` holds the paper's setup, but this trainer refuses an FSDP or
DeepSpeed launch for now rather than silently replicating the model (see the
README's launch section for what was checked).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..errors import DftlensError

BUCKET_ELEMENTS = 64 << 20  # float32 elements per gradient all-reduce (256 MB)
TRACKERS = ("tensorboard", "wandb")


def _sharded_launch() -> str | None:
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "DeepSpeed"
    return None


def check_trackers(report_to: list[str]) -> None:
    """Raise DftlensError for an unknown tracker or one whose package is missing."""
    import importlib.util

    for name in report_to:
        if name not in TRACKERS:
            raise DftlensError(f"--report-to must be one of {', '.join(TRACKERS)}, not {name!r}.")
        module = "tensorboard" if name == "tensorboard" else "wandb"
        if importlib.util.find_spec(module) is None and not (
                name == "tensorboard" and importlib.util.find_spec("tensorboardX")):
            raise DftlensError(f"--report-to {name} needs the {module} package: pip install {module}.")


@dataclass
class Runtime:
    """The accelerate state of this process (one per run)."""

    accelerator: object
    requested_device: str | None = None
    trackers: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, device: str | None = None, bf16: bool = True, report_to: list[str] | None = None,
              out: str | None = None) -> "Runtime":
        kind = _sharded_launch()
        if kind:
            raise DftlensError(
                f"dftlens train does not shard the model ({kind}) yet; launch with a data-parallel accelerate "
                "config (configs/accelerate/ddp_8gpu.yaml) and --lora for large models."
            )
        report_to = list(report_to or [])
        check_trackers(report_to)
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        mixed = "bf16" if bf16 and not on_cpu else "no"
        project = ProjectConfiguration(project_dir=out, logging_dir=os.path.join(out, "tracking")) if out else None
        accelerator = Accelerator(cpu=on_cpu, mixed_precision=mixed, log_with=report_to or None,
                                  project_config=project)
        return cls(accelerator, device, report_to)

    # -- who am I -----------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def mixed_precision(self) -> str:
        return self.accelerator.mixed_precision

    def device(self) -> str:
        """The requested device in a single process (e.g. cuda:1), else accelerate's choice."""
        if self.requested_device and self.world_size == 1:
            return self.requested_device
        return str(self.accelerator.device)

    def autocast(self):
        return self.accelerator.autocast() if self.mixed_precision != "no" else nullcontext()

    # -- collectives --------------------------------------------------------
    def average_gradients(self, params) -> None:
        """Mean of every parameter's gradient over the processes, in flat buckets."""
        if self.world_size == 1:
            return
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for bucket in _buckets(params):
            grads = [p.grad for p in bucket]
            flat = self.accelerator.reduce(_flatten_dense_tensors(grads), reduction="mean")
            for g, new in zip(grads, _unflatten_dense_tensors(flat, grads)):
                g.copy_(new)

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        t = self.accelerator.reduce(t, reduction="sum")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on one (Ctrl-C reaches them at different moments)."""
        if flag:
            self.accelerator.set_trigger()
        return self.accelerator.check_trigger()

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    # -- trackers -----------------------------------------------------------
    def init_trackers(self, name: str, config: dict) -> None:
        if self.trackers:
            clean = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
            self.accelerator.init_trackers(name, config=clean)

    def log(self, record: dict, step: int) -> None:
        if self.trackers:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def end(self) -> None:
        if self.trackers:
            self.accelerator.end_training()


def _buckets(params):
    bucket, size = [], 0
    for p in params:
        # one dtype and device per bucket (flattening mixes nothing)
        if bucket and (size + p.numel() > BUCKET_ELEMENTS or p.grad.dtype != bucket[0].grad.dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        yield bucket
