"""The two engines under the model interface: TransformerLens and nnsight.

Both receive the hook names in execution order, hand each activation to
``keep`` and stop the forward pass right after the last one, so a capture of
layer ``i`` never computes the layers above it, nor the LM head.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable

import torch

from ..errors import DftlensError
from .architecture import describe
from .hooks import parse_hook_name

BACKENDS = ("transformer_lens", "nnsight")


class _StopForward(Exception):
    """Raised from the last requested hook to skip the rest of the forward pass."""


class TransformerLensEngine:
    name = "transformer_lens"

    def __init__(self, hf_model, tokenizer, model_name: str, path: str | None = None):
        from transformer_lens.model_bridge import TransformerBridge

        # TransformerLens re-reads the tokenizer from its directory to set BOS handling;
        # it needs the HF architecture name, which GGUF-converted and tiny configs may lack.
        if not getattr(hf_model.config, "architectures", None):
            hf_model.config.architectures = [type(hf_model).__name__]
        logging.getLogger("transformer_lens").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.bridge = TransformerBridge.boot_transformers(
                path or model_name,
                hf_model=hf_model,
                tokenizer=tokenizer,
                device=str(next(hf_model.parameters()).device),
                dtype=next(hf_model.parameters()).dtype,
            )

    def run(self, batch: dict, names: list[str], keep: Callable[[str, torch.Tensor], None]) -> None:
        remaining = set(names)

        def make_hook(name: str):
            def hook(act, hook):  # TransformerLens calls hook(activation, hook=HookPoint)
                keep(name, act)
                remaining.discard(name)
                if not remaining:
                    raise _StopForward
                return None  # read-only: leave the activation as it is

            return hook

        try:
            with self.bridge.hooks(fwd_hooks=[(n, make_hook(n)) for n in names]):
                self.bridge(
                    batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"],
                    return_type=None,
                )
        except _StopForward:
            pass


class NNsightEngine:
    """nnsight over the same module tree; ``remote=True`` is passed to every trace.

    Limitation (untested here, no network): ``load_model`` still loads the weights
    locally, and the logit lens decodes locally, so NDIF only helps once the model
    is built from its Hugging Face id with meta weights and the lens runs inside
    the trace; that is the next step for models too large for the machine.
    """

    name = "nnsight"

    def __init__(self, hf_model, tokenizer, model_name: str, path: str | None = None, remote: bool = False):
        from nnsight import TransformersModel

        self.remote = remote
        self.sites = describe(hf_model).sites
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = TransformersModel(hf_model, task="text-generation", tokenizer=tokenizer)

    def _envoy(self, name: str):
        layer, site = parse_hook_name(name)
        sub, which = self.sites[site]
        module = self.model.model.layers[layer]
        for part in filter(None, sub.split(".")):
            module = getattr(module, part)
        value = module.input if which == "input" else module.output
        # Attention modules return (output, weights); decoder layers a tensor or tuple.
        return value[0] if isinstance(value, tuple) else value

    def run(self, batch: dict, names: list[str], keep: Callable[[str, torch.Tensor], None]) -> None:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
        with self.model.trace(inputs, remote=self.remote) as tracer:
            for name in names:  # already in execution order, as nnsight requires
                keep(name, self._envoy(name).save())
            tracer.stop()


def make_engine(backend: str, hf_model, tokenizer, model_name: str, path: str | None = None, **options):
    if backend == "transformer_lens":
        return TransformerLensEngine(hf_model, tokenizer, model_name, path)
    if backend == "nnsight":
        return NNsightEngine(hf_model, tokenizer, model_name, path, **options)
    raise DftlensError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
