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
from .hook_points import execution_order, parse_hook_name

BACKENDS = ("transformer_lens", "nnsight")


# The name under which TransformerLens' bridge registers each wrapped Hugging Face module (its
# ``set_original_component`` calls ``add_module("_original_component", ...)``), so it appears in the
# wrapped model's parameter names; the module itself is read through the public ``original_component``.
BRIDGE_SUBMODULE = "_original_component"


def hf_name(name: str) -> str:
    """A parameter or module name as Hugging Face spells it (the bridge's :data:`BRIDGE_SUBMODULE` removed)."""
    return name.replace(f".{BRIDGE_SUBMODULE}", "")


def unwrap(module):
    """The Hugging Face module a bridge component wraps (its ``original_component``), else ``module`` itself."""
    inner = getattr(module, "original_component", None)
    return inner if isinstance(inner, torch.nn.Module) else module


class _StopForward(Exception):
    """Raised from the last requested hook to skip the rest of the forward pass."""


# Config attributes TransformerLens 4's bridge reads to size attention (transformer_lens/model_bridge/sources/
# _hf_format.py), whichever family the model is: one the family's own config does not define is a leftover.
BRIDGE_GEOMETRY = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_key_value_heads",
                   "num_global_key_value_heads", "head_dim")


def drop_ignored_attributes(config) -> list[str]:
    """Remove from ``config`` the :data:`BRIDGE_GEOMETRY` attributes its family ignores; return their names.

    A config.json may carry keys its family never reads (a GPT-2 or GPT-NeoX config with
    ``num_key_value_heads``): Hugging Face ignores them, but TransformerLens's bridge reads
    them and reshapes attention with them (``shape '[2, 19, 2, 16]' is invalid``). An
    attribute counts as ignored when the family's config class does not define it (it is not
    among the attributes of a default instance). The model itself never reads it, so its
    outputs do not change.
    """
    try:
        known = set(type(config)().to_dict())
    except Exception:  # a config class that cannot be built without arguments: leave it alone
        return []
    dropped = [name for name in BRIDGE_GEOMETRY if name in config.__dict__ and name not in known]
    for name in dropped:
        delattr(config, name)
    return dropped


class TransformerLensEngine:
    """The TransformerLens 4 engine: a ``TransformerBridge`` around the loaded Hugging Face model.

    Activations are read and edited through the bridge's hook points, which already carry
    the TransformerLens names dftlens uses.
    """

    name = "transformer_lens"

    def __init__(self, hf_model, tokenizer, model_name: str, path: str | None = None):
        """Boot the bridge on ``hf_model`` and ``tokenizer``, on the model's device and dtype.

        ``path`` (or else ``model_name``) is where TransformerLens re-reads the tokenizer from. Sets
        ``config.architectures`` when the config lacks it (GGUF-converted and tiny configs), and hooks
        each attention module so it reads the KV cache that Transformers 5 passes as ``cache=``.
        """
        from transformer_lens.model_bridge import TransformerBridge

        # TransformerLens re-reads the tokenizer from its directory to set BOS handling;
        # it needs the HF architecture name, which GGUF-converted and tiny configs may lack.
        if not getattr(hf_model.config, "architectures", None):
            hf_model.config.architectures = [type(hf_model).__name__]
        drop_ignored_attributes(hf_model.config)  # e.g. a GPT-2 config.json carrying num_key_value_heads
        logging.getLogger("transformer_lens").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.bridge = TransformerBridge.boot_transformers(
                path or model_name,
                trust_remote_code=bool(getattr(hf_model, "dftlens_trust_remote_code", False)),
                hf_model=hf_model,
                tokenizer=tokenizer,
                device=str(next(hf_model.parameters()).device),
                dtype=next(hf_model.parameters()).dtype,
            )
        self._bridge_reads_cache(hf_model)

    @staticmethod
    def _bridge_reads_cache(hf_model) -> None:
        """Hand the bridge's attention the KV cache under the name it reads.

        Transformers 5 passes a layer's cache to attention as ``cache=``; the
        bridge's attention components read ``past_key_values=`` and would silently
        ignore the cache (no keys stored, none attended to). A kwargs pre-hook copies it over.
        """
        def pre(module, args, kwargs):
            if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None:
                kwargs["past_key_values"] = kwargs["cache"]
                return args, kwargs
            return None

        from transformer_lens.model_bridge.generalized_components import AttentionBridge

        for module in hf_model.modules():
            if isinstance(module, AttentionBridge) and not getattr(module, "_dftlens_cache_hook", False):
                module.register_forward_pre_hook(pre, with_kwargs=True)
                module._dftlens_cache_hook = True

    def run(self, batch: dict, names: list[str], keep: Callable[[str, torch.Tensor], None],
            edit: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        """:meth:`Engine.run` through ``bridge.hooks``.

        Each hook keeps (and, for ``edit.hooks``, first replaces) its activation; the last requested
        hook raises a private exception that ends the forward pass.
        """
        remaining = set(names)
        edited = set(getattr(edit, "hooks", ()))

        def make_hook(name: str):
            def hook(act, hook):  # TransformerLens calls hook(activation, hook=HookPoint)
                new = edit(name, act) if name in edited else None
                if name in remaining:
                    keep(name, act if new is None else new)
                    remaining.discard(name)
                    if not remaining:
                        raise _StopForward
                return new  # None: read-only, leave the activation as it is

            return hook

        hooks = sorted(set(names) | edited, key=execution_order)
        try:
            extra = {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}
            with self.bridge.hooks(fwd_hooks=[(n, make_hook(n)) for n in hooks]):
                self.bridge(
                    batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    return_type=None,
                    **extra,
                    **({"past_key_values": batch["past_key_values"]} if "past_key_values" in batch else {}),
                )
        except _StopForward:
            pass


class NNsightEngine:
    """nnsight over the same module tree; ``remote=True`` is passed to every trace.

    ``lens_in_trace`` (True on NDIF): the probe's logit-lens measurement runs inside
    the trace (:mod:`dftlens.analysis.lens_in_trace`) instead of capturing residuals.
    For NDIF the model is built from its Hugging Face id with meta weights
    (:func:`dftlens.models.remote.load_remote`) and handed over as ``nnsight_model``.
    """

    name = "nnsight"

    def __init__(self, hf_model, tokenizer, model_name: str, path: str | None = None, remote: bool = False,
                 nnsight_model=None, lens_in_trace: bool | None = None):
        """Wrap ``hf_model`` in an nnsight ``TransformersModel``, or use ``nnsight_model`` as given.

        ``nnsight_model``: e.g. NDIF's meta-weight model; the sites come from ``hf_model``'s family
        table either way. ``remote``: run every trace on NDIF; ``lens_in_trace``: decode the logit
        lens inside the trace (default: same as ``remote``). ``model_name`` and ``path`` are accepted
        for the same signature as :class:`TransformerLensEngine` and not used.
        """
        from nnsight import TransformersModel

        self.remote = remote
        self.lens_in_trace = remote if lens_in_trace is None else lens_in_trace
        arch = describe(hf_model)
        self.sites, self.layers_path = arch.sites, arch.layers_path
        if nnsight_model is not None:
            self.model = nnsight_model
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = TransformersModel(hf_model, task="text-generation", tokenizer=tokenizer)

    def _module(self, name: str):
        layer, site = parse_hook_name(name)
        sub, which = self.sites[site]
        module = self.model
        for part in self.layers_path.split("."):
            module = getattr(module, part)
        module = module[layer]
        for part in filter(None, sub.split(".")):
            module = getattr(module, part)
        return module, which

    def _envoy(self, name: str):
        module, which = self._module(name)
        value = module.input if which == "input" else module.output
        # Attention modules return (output, weights); decoder layers a tensor or tuple.
        return value[0] if isinstance(value, tuple) else value

    def _write(self, name: str, edit: Callable[[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Replace the activation at ``name`` by ``edit(name, activation)``; return the new one."""
        module, which = self._module(name)
        if which == "input":
            new = edit(name, module.input)
            module.input = new  # nnsight repacks it as the first positional argument
            return new
        value = module.output
        if isinstance(value, tuple):
            new = edit(name, value[0])
            module.output = (new, *value[1:])
        else:
            new = edit(name, value)
            module.output = new
        return new

    def run(self, batch: dict, names: list[str], keep: Callable[[str, torch.Tensor], None],
            edit: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        """:meth:`Engine.run` as one nnsight trace.

        Visits the requested and edited sites in execution order, writes edits into the module
        inputs or outputs, saves the kept activations, then ``tracer.stop()`` ends the forward pass.
        """
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids", "past_key_values") if k in batch}
        wanted, edited = set(names), set(getattr(edit, "hooks", ()))
        with self.model.trace(inputs, remote=self.remote) as tracer:
            # in execution order, as nnsight requires
            for name in sorted(wanted | edited, key=execution_order):
                act = self._write(name, edit) if name in edited else self._envoy(name)
                if name in wanted:
                    keep(name, act.save())
            tracer.stop()


# nnsight 0.8 has no public accessor for the torch module an envoy wraps; its ``Envoy`` documents the
# attribute ``_module`` ("The wrapped torch.nn.Module"). This is the one place dftlens reads it:
# pyproject.toml pins nnsight>=0.8,<0.9 and tests/analysis/test_lens_in_trace.py fails if it disappears.
NNSIGHT_MODULE_ATTRIBUTE = "_module"


def nnsight_module(envoy) -> torch.nn.Module:
    """The torch module an nnsight envoy wraps (e.g. the Hugging Face model of a ``LanguageModel``).

    Raises:
        DftlensError: the envoy has no such module (an nnsight release outside the pinned range).
    """
    module = getattr(envoy, "__dict__", {}).get(NNSIGHT_MODULE_ATTRIBUTE)
    if not isinstance(module, torch.nn.Module):
        import nnsight

        raise DftlensError(f"nnsight {getattr(nnsight, '__version__', '?')} no longer keeps the wrapped model as "
                           f"Envoy.{NNSIGHT_MODULE_ATTRIBUTE}; install the range dftlens supports: "
                           "pip install 'nnsight>=0.8,<0.9'.")
    return module


def make_engine(backend: str, hf_model, tokenizer, model_name: str, path: str | None = None, **options):
    """The engine for ``backend``; ``options`` go to :class:`NNsightEngine` only.

    Raises:
        DftlensError: ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend == "transformer_lens":
        return TransformerLensEngine(hf_model, tokenizer, model_name, path)
    if backend == "nnsight":
        return NNsightEngine(hf_model, tokenizer, model_name, path, **options)
    raise DftlensError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
