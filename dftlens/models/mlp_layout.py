"""The MLP of each family: its hidden units ("neurons"), what makes one active, what it owns.

The neuron site ``blocks.{l}.mlp.hook_post`` (``[batch, seq, d_mlp]``) is the input of the
MLP's down/output projection. Per family (module names relative to the decoder layer):

- Llama, Mistral, Qwen2/2.5, Qwen3, Gemma 1/2/3, OLMo-2: hook_post = ``act_fn(gate_proj(x)) *
  up_proj(x)``; active: ``mlp.act_fn``'s output (act(gate)) > 0; output projection ``mlp.down_proj``.
- Phi-3: ``activation_fn(gate) * up`` from the fused ``gate_up_proj`` (gate rows first); active:
  ``mlp.activation_fn``'s output > 0; output projection ``mlp.down_proj``.
- GPT-NeoX: ``act(dense_h_to_4h(x))``; active: ``mlp.act``'s output (the unit itself) > 0;
  output projection ``mlp.dense_4h_to_h``.
- BLOOM: ``gelu_impl(dense_h_to_4h(x))``; active: ``mlp.gelu_impl``'s output > 0; output
  projection ``mlp.dense_4h_to_h``.
- GPT-2: ``act(c_fc(x))`` (Conv1D); active: ``mlp.act``'s output > 0; output projection
  ``mlp.c_proj`` (Conv1D).

"Active" follows Tang et al. 2024 (arXiv 2402.16438, code RUCAIBox/Language-Specific-Neurons,
``activation.py``): the activation function's output > 0, i.e. act(gate) for gated MLPs (their
LLaMA hook) and act(fc_in), which is the hidden unit itself, otherwise (their BLOOM hook).

:func:`neuron_parameters` lists the weight slices a hidden unit owns (gate/up rows and down
columns; fc_in rows and bias, fc_out columns; GPT-2's Conv1D stores ``[in, out]``, so there it
is c_fc columns and c_proj rows), which neuron-restricted fine-tuning needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DftlensError
from .architecture import check_supported


@dataclass(frozen=True)
class MlpLayout:
    """Where a family's MLP keeps its parts (module names relative to the decoder layer).

    Fields: ``act`` (module whose output > 0 is "active"), ``down`` (output projection; its
    input is the hidden unit), ``inputs`` (the input projections whose output units are the
    hidden units: gate and up, or fc_in), ``fused_gate_up`` (one projection holds gate rows then
    up rows, Phi-3), ``conv1d`` (weights stored ``[in, out]``, GPT-2), ``gated``.
    """

    act: str
    down: str
    inputs: tuple[str, ...]
    gated: bool
    fused_gate_up: bool = False
    conv1d: bool = False


_GATED = MlpLayout("mlp.act_fn", "mlp.down_proj", ("mlp.gate_proj", "mlp.up_proj"), gated=True)
_LAYOUTS = {
    **{t: _GATED for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo2")},
    "phi3": MlpLayout("mlp.activation_fn", "mlp.down_proj", ("mlp.gate_up_proj",), gated=True, fused_gate_up=True),
    "gpt_neox": MlpLayout("mlp.act", "mlp.dense_4h_to_h", ("mlp.dense_h_to_4h",), gated=False),
    "bloom": MlpLayout("mlp.gelu_impl", "mlp.dense_4h_to_h", ("mlp.dense_h_to_4h",), gated=False),
    "gpt2": MlpLayout("mlp.act", "mlp.c_proj", ("mlp.c_fc",), gated=False, conv1d=True),
}


def mlp_layout(config) -> MlpLayout:
    """The :class:`MlpLayout` of a Hugging Face config's family.

    Raises:
        DftlensError: an unsupported family (one sentence naming it).
    """
    check_supported(config)
    return _LAYOUTS[config.model_type]


def _layer_module(hf_model: nn.Module, layer: int, path: str) -> nn.Module:
    from .architecture import describe
    from .engines import unwrap

    module = hf_model.get_submodule(describe(hf_model).layers_path)[layer]
    for part in path.split("."):
        module = getattr(unwrap(module), part)
    return unwrap(module)


def act_module(hf_model: nn.Module, layer: int) -> nn.Module:
    """The module of block ``layer`` whose output > 0 marks a hidden unit active (table above)."""
    return _layer_module(hf_model, layer, mlp_layout(hf_model.config).act)


def down_module(hf_model: nn.Module, layer: int) -> nn.Module:
    """The output projection of block ``layer``'s MLP (its input is ``blocks.{layer}.mlp.hook_post``)."""
    return _layer_module(hf_model, layer, mlp_layout(hf_model.config).down)


def d_mlp(hf_model: nn.Module) -> int:
    """The number of hidden units per MLP (the last axis of ``hook_post``)."""
    weight = down_module(hf_model, 0).weight
    return int(weight.shape[0] if mlp_layout(hf_model.config).conv1d else weight.shape[1])


@dataclass(frozen=True)
class NeuronParameter:
    """One parameter slice owned by hidden units: unit ``i`` owns ``param.select(dim, offset + i)``.

    ``name`` is the parameter's Hugging Face name (``model.layers.3.mlp.down_proj.weight``).
    """

    name: str
    param: nn.Parameter
    dim: int
    offset: int = 0

    def index(self, neurons: torch.Tensor) -> torch.Tensor:
        """The indices along :attr:`dim` of hidden units ``neurons`` (LongTensor ``[k]``)."""
        return torch.as_tensor(neurons, dtype=torch.long) + self.offset


def neuron_parameters(hf_model: nn.Module, layer: int) -> list[NeuronParameter]:
    """Every weight/bias slice that block ``layer``'s hidden units own, with its axis.

    Gated MLPs: gate and up rows (weight dim 0, bias dim 0), down columns (weight dim 1);
    Phi-3's fused ``gate_up_proj``: rows ``i`` and ``d_mlp + i``. Plain MLPs: fc_in rows and bias,
    fc_out columns. GPT-2's Conv1D (``weight [in, out]``): c_fc columns and bias, c_proj rows.
    The down projection's bias is shared by all units and not listed.

    Raises:
        DftlensError: an unsupported family, or ``layer`` out of range.
    """
    from .architecture import describe
    from .engines import hf_name

    layout = mlp_layout(hf_model.config)
    n_layers = len(hf_model.get_submodule(describe(hf_model).layers_path))
    if not 0 <= layer < n_layers:
        raise DftlensError(f"Layer {layer} is out of range: the model has blocks 0..{n_layers - 1}.")
    names = {id(p): hf_name(n) for n, p in hf_model.named_parameters()}
    width = d_mlp(hf_model)
    out: list[NeuronParameter] = []
    for path in layout.inputs:
        module = _layer_module(hf_model, layer, path)
        offsets = (0, width) if layout.fused_gate_up else (0,)
        for offset in offsets:
            out.append(NeuronParameter(names[id(module.weight)], module.weight, 1 if layout.conv1d else 0, offset))
            if getattr(module, "bias", None) is not None:
                out.append(NeuronParameter(names[id(module.bias)], module.bias, 0, offset))
    down = down_module(hf_model, layer)
    out.append(NeuronParameter(names[id(down.weight)], down.weight, 0 if layout.conv1d else 1))
    return out


__all__ = ["MlpLayout", "NeuronParameter", "mlp_layout", "act_module", "down_module", "d_mlp", "neuron_parameters"]
