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
needs the state sharded: with an FSDP2 accelerate config
(``configs/accelerate/fsdp2_8gpu_7b.yaml``) or ``--fsdp`` under torchrun,
:meth:`Runtime.shard` applies ``fully_shard`` to every decoder layer. DeepSpeed
is refused with a message.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from ..errors import DftlensError

BUCKET_ELEMENTS = 64 << 20  # float32 elements per gradient all-reduce (256 MB)
TRACKERS = ("tensorboard", "wandb")


def fsdp_launch() -> bool:
    """``accelerate launch`` with an FSDP config (version 2 required)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise DftlensError("dftlens train shards with FSDP2 only: set fsdp_version: 2 in the accelerate config "
                           "(configs/accelerate/fsdp2_8gpu_7b.yaml).")
    return True


def _deepspeed_launch() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


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
    fsdp: bool = False  # decoder layers sharded with FSDP2 (fully_shard) over the processes

    @classmethod
    def start(cls, device: str | None = None, bf16: bool = True, report_to: list[str] | None = None,
              out: str | None = None, fsdp: bool = False) -> "Runtime":
        """Start accelerate for this process: CPU or GPU, bf16 autocast, trackers, FSDP2.

        ``device``: ``"cpu"`` forces the CPU (None: the GPU when there is one); ``bf16``: mixed
        precision on a GPU (the CPU always runs float32); ``report_to``: trackers of
        :data:`TRACKERS`, logging under ``out/tracking``; ``fsdp``: shard decoder layers (also on
        when accelerate was launched with an FSDP config; kept only with more than one process).

        Raises:
            DftlensError: launched under DeepSpeed, an FSDP config other than version 2, or an
                unknown or uninstalled tracker.
        """
        if _deepspeed_launch():
            raise DftlensError(
                "dftlens train does not run under DeepSpeed yet; for sharded full fine-tuning use the FSDP2 "
                "config (configs/accelerate/fsdp2_8gpu_7b.yaml) or --fsdp under torchrun."
            )
        fsdp = fsdp or fsdp_launch()
        report_to = list(report_to or [])
        check_trackers(report_to)
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
        mixed = "bf16" if bf16 and not on_cpu else "no"
        project = ProjectConfiguration(project_dir=out, logging_dir=os.path.join(out, "tracking")) if out else None
        accelerator = Accelerator(cpu=on_cpu, mixed_precision=mixed, log_with=report_to or None,
                                  project_config=project)
        return cls(accelerator, device, report_to, fsdp and accelerator.num_processes > 1)

    # -- who am I -----------------------------------------------------------
    @property
    def rank(self) -> int:
        """This process's index, 0 .. world_size - 1."""
        return self.accelerator.process_index

    @property
    def world_size(self) -> int:
        """The number of processes."""
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        """Whether this is the main process (the one that writes files)."""
        return self.accelerator.is_main_process

    @property
    def mixed_precision(self) -> str:
        """accelerate's mixed-precision mode: ``"bf16"`` or ``"no"``."""
        return self.accelerator.mixed_precision

    def device(self) -> str:
        """The requested device in a single process (e.g. cuda:1), else accelerate's choice."""
        if self.requested_device and self.world_size == 1:
            return self.requested_device
        return str(self.accelerator.device)

    def autocast(self):
        """accelerate's autocast context under bf16, else a context that does nothing."""
        return self.accelerator.autocast() if self.mixed_precision != "no" else nullcontext()

    # -- FSDP2 ------------------------------------------------------------------
    def shard(self, lm) -> None:
        """Shard every decoder layer over the processes with FSDP2 (``fully_shard``), in place.

        Applied to the Hugging Face layers (under the engine's wrappers), after the
        engine is built: the engine's hooks then see whole activations, and a pass that
        stops at layer i all-gathers layers 0..i only. The embeddings, final norm and
        LM head stay replicated (their gradients are averaged like data parallelism):
        ``fully_shard`` on the engine-wrapped root model fails. With bf16, layers
        compute in bf16 and reduce gradients in float32 (``MixedPrecisionPolicy``).
        """
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy

        device_type = self.accelerator.device.type
        mesh = init_device_mesh(device_type, (self.world_size,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.mixed_precision == "bf16" else MixedPrecisionPolicy()
        shard_decoder_layers(lm, mesh, policy)

    def full_state(self, module) -> dict[str, torch.Tensor]:
        """The state dict with every sharded tensor gathered (a collective: call on every process)."""
        return {name: (t.full_tensor() if _is_dtensor(t) else t) for name, t in module.state_dict().items()}

    def clip_grad_norm(self, params, max_norm: float) -> torch.Tensor:
        """Clip the global gradient norm (sharded and replicated gradients alike); returns the norm before."""
        if not self.fsdp:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        grads = [p.grad for p in params if p.grad is not None]
        device = self.accelerator.device
        sharded = sum((g.to_local().float().pow(2).sum() for g in grads if _is_dtensor(g)),
                      torch.zeros((), device=device))
        sharded = self.accelerator.reduce(sharded, reduction="sum")
        replicated = sum((g.float().pow(2).sum() for g in grads if not _is_dtensor(g)), torch.zeros((), device=device))
        norm = (sharded + replicated).sqrt()
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        for g in grads:
            (g.to_local() if _is_dtensor(g) else g).mul_(coef.to(g.dtype))
        return norm

    # -- collectives --------------------------------------------------------
    def average_gradients(self, params) -> None:
        """Mean of every replicated parameter's gradient over the processes, in flat buckets.

        Sharded (FSDP2) parameters are skipped: ``fully_shard`` already reduce-scattered theirs.
        """
        if self.world_size == 1:
            return
        params = [p for p in params if not _is_dtensor(p)]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for bucket in _buckets(params):
            grads = [p.grad for p in bucket]
            flat = self.accelerator.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
            for g, new in zip(grads, torch.split(flat, [g.numel() for g in grads])):
                g.copy_(new.view_as(g))

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """``values`` summed over the processes (float64 all-reduce); as given in a single process."""
        if self.world_size == 1:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        t = self.accelerator.reduce(t, reduction="sum")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def gather_rows(self, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(every process's rows concatenated in rank order, this process's first row)``.

        ``local`` [n, ...] must have the same shape on every process (all-gather; as given in one process).
        """
        if self.world_size == 1:
            return local, 0
        return self.accelerator.gather(local.contiguous()), self.rank * local.shape[0]

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on one (Ctrl-C reaches them at different moments)."""
        if flag:
            self.accelerator.set_trigger()
        return self.accelerator.check_trigger()

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        self.accelerator.wait_for_everyone()

    # -- trackers -----------------------------------------------------------
    def init_trackers(self, name: str, config: dict) -> None:
        """Start the trackers for run ``name`` with ``config``'s scalar entries (no-op without trackers)."""
        if self.trackers:
            clean = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
            self.accelerator.init_trackers(name, config=clean)

    def log(self, record: dict, step: int) -> None:
        """Send one step log ``record`` (without its ``step`` key) to the trackers at ``step``."""
        if self.trackers:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def end(self) -> None:
        """Close the trackers (no-op without trackers)."""
        if self.trackers:
            self.accelerator.end_training()


def shard_decoder_layers(lm, mesh, policy=None) -> int:
    """``fully_shard`` (FSDP2) every decoder layer of ``lm`` over ``mesh``, in place; returns how many.

    The layers are found by the family table (:mod:`dftlens.models.architecture`,
    ``lm.arch.layers_path``: ``model.layers`` for Llama-likes, ``gpt_neox.layers``,
    ``transformer.h`` for BLOOM and GPT-2), unwrapped from the engine's wrappers.
    Raises DftlensError when the path holds no layers.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from ..models.engines import unwrap

    try:
        layers = lm.hf_model.get_submodule(lm.arch.layers_path)
    except AttributeError:
        layers = None
    if layers is None or len(layers) == 0:
        raise DftlensError(f"Cannot find the decoder layers of {lm.name} ({lm.arch.family}) at "
                           f"{lm.arch.layers_path} to shard.")
    for layer in layers:
        layer = unwrap(layer)
        for param in layer.parameters():  # FSDP2 shards contiguous tensors only (a loaded BLOOM has transposed ones)
            if not param.is_contiguous():
                param.data = param.data.contiguous()
        fully_shard(layer, mesh=mesh, mp_policy=policy or MixedPrecisionPolicy())
    return len(layers)


def _is_dtensor(t) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover
        return False
    return isinstance(t, DTensor)


def _buckets(params):
    bucket, size = [], 0
    for p in params:
        # one dtype and device per bucket (flattening mixes nothing)
        if bucket and (size + p.numel() > BUCKET_ELEMENTS
                       or (p.grad.dtype, p.grad.device) != (bucket[0].grad.dtype, bucket[0].grad.device)):
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        yield bucket
