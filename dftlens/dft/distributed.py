"""One process or several: what the trainer needs to know about its peers.

Plain ``dftlens train`` (or ``python -m ...``) is one process on the CPU or one
GPU. Under ``accelerate launch`` (or ``torchrun``) each process holds a full
replica of the model, takes every ``world_size``-th micro-batch, and the
gradients are averaged with ``all_reduce`` before clipping and the AdamW step
(data parallelism). Only rank 0 writes the log and the checkpoints. For
example, on 8 GPUs of one machine::

    accelerate launch --multi_gpu --num_processes 8 --no_python dftlens train \\
        --model llama2-7b --layers runs/probe-llama2/layers.json --lang zh \\
        --lc feature --et logits --lora --batch-size 4 --grad-accum 4 --out runs/dft-llama2-zh

(``--batch-size`` is per process: 8 x 4 x 4 = 128 examples per step, the paper's
batch.) Memory per GPU for a 7B model: bf16 autocast over float32 master
weights needs ~28 GB for the weights alone; LoRA adds little, so LoRA fits an
80 GB GPU per replica. Full fine-tuning of 7B with AdamW (~112 GB of weights,
gradients and optimizer state) needs the state sharded across GPUs (FSDP),
which this trainer does not do yet: it refuses an accelerate FSDP config
rather than silently replicating. The FSDP setup the paper used (8xA100,
full-shard, bf16) corresponds to this accelerate config, for when sharding is
added (the engines read weights through the module tree, which FSDP2's
``fully_shard`` keeps, unlike FSDP1's wrappers)::

    compute_environment: LOCAL_MACHINE
    distributed_type: FSDP
    num_processes: 8
    mixed_precision: bf16
    fsdp_config:
      fsdp_version: 2
      fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
      fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
      fsdp_state_dict_type: FULL_STATE_DICT
      fsdp_cpu_ram_efficient_loading: true
      fsdp_reshard_after_forward: true
      fsdp_activation_checkpointing: true
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import DftlensError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def start(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            raise DftlensError(
                "dftlens train does not shard the model (FSDP) yet; launch with a multi-GPU (data parallel) "
                "accelerate config, or use --lora for large models (see dftlens/dft/distributed.py)."
            )
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            from accelerate import PartialState

            PartialState()  # initialises the process group from the launcher's environment
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> str:
        if requested:
            return requested
        if torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return "cpu"

    def average_gradients(self, params) -> None:
        if self.world_size == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= self.world_size

    def average_values(self, values: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return values
        return {k: v * self.world_size for k, v in self.average_values(values).items()}

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on one (Ctrl-C reaches them at different moments)."""
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
