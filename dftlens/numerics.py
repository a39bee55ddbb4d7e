"""Non-finite numbers stop a run: the one place that checks activations, logits, losses and settings.

A NaN or an infinity in a model's activations (NaN weights, or a bfloat16/float16
overflow on a real model) would otherwise flow on silently: lens curves of NaN, a
layer choice made from them, chance accuracy in an evaluation, an all-NaN fine-tuned
model. Every verb calls one of these checks, and each raises
:class:`~dftlens.errors.NonFiniteError` (a :class:`~dftlens.errors.DftlensError`:
``error: <sentence>``, exit code 2) naming where the values first appear:

- :func:`check_activations`: captured activations (``LensModel.capture``: probe, lens,
  patch, compare), the first hook (layer) in execution order that holds one, with the dtype;
- :func:`check_logits`: decoded logits (``LensModel.decode``);
- :func:`guard_forward`: plain forward passes (``dftlens eval``): hooks on every decoder
  block and the LM head name the first block whose output is non-finite;
- :func:`check_step`: a training step's loss terms and gradient norm (``dftlens train``);
- :func:`check_setting`: a numeric setting of a config dataclass (``nan``, ``inf``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import torch

from .errors import NonFiniteError

LOSS_NAMES = {"tft": "L_TFT", "lc": "L_LC", "et": "L_ET", "loss": "the total loss",
              "lc_gnorm": "L_LC's gradient norm", "et_gnorm": "L_ET's gradient norm"}


def _kind(t: torch.Tensor) -> str:
    """'NaN', 'inf' or 'NaN and inf' for a tensor known to hold a non-finite value (one sync)."""
    nan, inf = bool(torch.isnan(t).any()), bool(torch.isinf(t).any())
    return "NaN and inf" if nan and inf else ("NaN" if nan else "inf")


def _advice(dtype: torch.dtype) -> str:
    if dtype in (torch.bfloat16, torch.float16):
        return f"a {str(dtype).replace('torch.', '')} overflow or non-finite weights; try --dtype float32"
    return "the model's weights hold NaN or inf; check the checkpoint"


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every tensor is free of NaN and inf, with one device synchronisation for the lot."""
    if not tensors:
        return True
    flags = [torch.isfinite(t).all() for t in tensors]
    device = flags[0].device
    return bool(torch.stack([f.to(device) for f in flags]).all())


def check_activations(acts: Mapping[str, torch.Tensor], model: str, dtype: torch.dtype,
                      mask: torch.Tensor | None = None) -> None:
    """Raise NonFiniteError if any activation holds NaN or inf, naming the first hook that does.

    ``acts``: hook name -> activation ``[b, t, d]``, ``[b, k, d]`` or ``[b, d]``, in execution
    order (as ``LensModel.capture`` keeps them); ``mask`` ``[b, t]`` (for ``[b, t, d]``
    activations) restricts the check to real tokens, so padding never counts.
    ``dtype`` is the model's, named in the message.
    """
    def finite(a: torch.Tensor) -> torch.Tensor:  # a 0-d bool; one read of ``a``, no copy of it
        # A row's float32 sum is finite iff the row is (NaN or inf anywhere propagates; d_model finite
        # values cannot overflow float32 at any activation scale a model reaches).
        rows = torch.isfinite(a.sum(dim=-1, dtype=torch.float32)) if a.dim() else torch.isfinite(a)
        if mask is not None and a.dim() == 3 and a.shape[:2] == mask.shape:
            rows = rows | ~mask.to(a.device).bool()
        return rows.all()

    flags = [finite(a) for a in acts.values()]
    if not flags or bool(torch.stack([f.to(flags[0].device) for f in flags]).all()):
        return
    name = next(n for n, f in zip(acts, flags) if not bool(f))
    bad = acts[name]
    if mask is not None and bad.dim() == 3 and bad.shape[:2] == mask.shape:
        bad = bad[mask.to(bad.device).bool()]  # only now, to say NaN or inf
    layer = name.split(".")[1] if name.startswith("blocks.") else name
    raise NonFiniteError(f"{_kind(bad)} in the activations of {model} at layer {layer} ({name}, the first "
                         f"layer read that holds any) in {str(dtype).replace('torch.', '')}: {_advice(dtype)}.")


def check_logits(logits: torch.Tensor, model: str, dtype: torch.dtype) -> None:
    """Raise NonFiniteError if decoded logits hold NaN or inf (final norm or LM head; the residual was finite)."""
    if all_finite([logits]):
        return
    raise NonFiniteError(f"{_kind(logits)} in the logit lens of {model} (its final norm or LM head; the "
                         f"residual was finite) in {str(dtype).replace('torch.', '')}: {_advice(dtype)}.")


@contextmanager
def guard_forward(hf_model: torch.nn.Module, layers_path: str | None, model: str) -> Iterator[None]:
    """Within the block, a forward pass of ``hf_model`` whose logits hold NaN or inf raises NonFiniteError.

    Each decoder block (``layers_path``, e.g. ``"model.layers"``) records, without a
    device synchronisation, whether its output is finite; the LM head's hook checks the
    logits once per forward and names the first non-finite block (``layers_path`` None:
    the head alone, naming no block).
    """
    blocks = list(hf_model.get_submodule(layers_path)) if layers_path else []
    dtype = next(hf_model.parameters()).dtype
    flags: list[torch.Tensor | None] = [None] * len(blocks)

    def block_hook(i: int):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if isinstance(hidden, torch.Tensor):
                flags[i] = torch.isfinite(hidden).all()
        return hook

    def head_hook(module, args, output):
        logits = output if isinstance(output, torch.Tensor) else output[0]
        if all_finite([logits]):
            return
        first = next((i for i, f in enumerate(flags) if f is not None and not bool(f)), None)
        where = f"from block {first} on (blocks.{first}.hook_resid_post)" if first is not None else \
            "in the final norm or LM head"
        raise NonFiniteError(f"{_kind(logits)} in the logits of {model}, {where}, in "
                             f"{str(dtype).replace('torch.', '')}: {_advice(dtype)}.")

    handles = [b.register_forward_hook(block_hook(i)) for i, b in enumerate(blocks)]
    head = hf_model.get_output_embeddings()
    if head is not None:
        handles.append(head.register_forward_hook(head_hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_step(values: Mapping[str, float], grad_norm: float, step: int, keep: Callable[[], str]) -> None:
    """Raise NonFiniteError if a training step's loss term or gradient norm is NaN or inf.

    ``values``: the step's loss terms (``tft``, ``lc``, ``et``, ``loss``, ``*_gnorm``);
    ``step``: its 1-based number. Call it before the optimizer step, so the weights are still
    the last finite state: ``keep()`` is then called to save that state and returns where it
    went (a sentence tail, e.g. "the last finite state is checkpoint-000003"). The loss terms
    are named as in Huo et al. (L_TFT, L_LC, L_ET); the first non-finite one is reported.
    """
    for key in ("tft", "lc", "et", "lc_gnorm", "et_gnorm", "loss"):
        if key in values and not math.isfinite(values[key]):
            raise NonFiniteError(f"Training stopped at step {step}: {LOSS_NAMES[key]} is {values[key]}; {keep()}.")
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"Training stopped at step {step}: the gradient norm is {grad_norm} (the losses "
                             f"were finite); {keep()}.")


def stopped_at(step: int, error: NonFiniteError, keep: Callable[[], str]) -> NonFiniteError:
    """``error`` (raised inside training step ``step``, 1-based) restated with the step and the state kept."""
    reason = str(error).rstrip(".")
    return NonFiniteError(f"Training stopped at step {step}: {reason[:1].lower() + reason[1:]}; {keep()}.")


def check_setting(value: object, where: str) -> None:
    """Raise NonFiniteError if ``value`` is a float NaN or infinity; ``where`` names it (``--lr``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise NonFiniteError(f"{where} must be a finite number, not {value}.")
