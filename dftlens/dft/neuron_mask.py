"""Neuron-restricted fine-tuning: update only chosen MLP neurons' weights (``--train-neurons``).

Follows Zhao et al., "How do Large Language Models Handle Multilingualism?" (NeurIPS 2024,
arXiv 2402.18815): fine-tuning only the language-specific neurons. The neurons come from
a ``neurons.csv`` written by ``dftlens neurons`` (columns ``layer``, ``neuron``,
``languages`` (codes joined by ``;``), ``entropy``, ``p_<lang>`` ...); the rows whose
``languages`` include one of the chosen languages are trained.

Mechanism: every parameter that no chosen neuron owns is frozen (``requires_grad``
off, so it is not in the optimizer); each MLP weight a chosen neuron owns (gate/up rows
and down columns, fc_in rows/bias and fc_out columns, per family:
:func:`dftlens.models.mlp_layout.neuron_parameters`) keeps its gradient only on those
rows/columns (a gradient hook multiplies by a 0/1 mask, so the mask applies before
accumulation, clipping and AdamW). With zero gradients AdamW's moments stay zero and the
update is exactly 0, so every other weight stays bit-identical; weight decay would shrink
them, so it is refused, as are LoRA (its update ``B @ A`` spans every row and column) and
FSDP (its sharded parameters drop the hooks). Every loss (TFT, DFT-logits/feature, ...)
trains through the mask.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import DataError, DftlensError

REQUIRED = ("layer", "neuron", "languages")


def read_neuron_file(path: str | Path, langs: list[str] | None) -> dict[int, list[int]]:
    """``{layer: sorted neuron indices}`` of the ``neurons.csv`` rows specific to any of ``langs``.

    ``langs`` None: every row of the file. Raises DataError (one sentence) when the file is
    missing or unreadable, lacks a column of :data:`REQUIRED`, has a negative or non-integer
    layer/neuron, or has no neuron for ``langs`` (naming the languages it has).
    """
    import pandas as pd

    from ..io import read_csv

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"--train-neurons {path} is not a file; pass the neurons.csv written by `dftlens neurons`.")
    try:
        table = read_csv(path, keep_default_na=False)  # the formula-cell quotes of write_csv undone
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"--train-neurons {path} is not a readable CSV ({err}).") from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise DataError(f"--train-neurons {path} has no {', '.join(missing)} column; expected the neurons.csv of "
                        "`dftlens neurons` (layer, neuron, languages, ...).")
    try:
        layer = pd.to_numeric(table["layer"], downcast=None).astype("int64")
        neuron = pd.to_numeric(table["neuron"], downcast=None).astype("int64")
        if (layer != pd.to_numeric(table["layer"])).any() or (neuron != pd.to_numeric(table["neuron"])).any():
            raise ValueError
    except (ValueError, TypeError):
        raise DataError(f"--train-neurons {path}: layer and neuron must be whole numbers.") from None
    if (layer < 0).any() or (neuron < 0).any():
        raise DataError(f"--train-neurons {path}: layer and neuron must be >= 0.")
    row_langs = [set(filter(None, str(v).split(";"))) for v in table["languages"]]
    keep = [langs is None or bool(s & set(langs)) for s in row_langs]
    chosen: dict[int, set[int]] = {}
    for lay, neu, k in zip(layer, neuron, keep):
        if k:
            chosen.setdefault(int(lay), set()).add(int(neu))
    if not chosen:
        have = sorted(set().union(*row_langs)) if row_langs else []
        raise DataError(f"--train-neurons {path} has no neuron specific to {', '.join(langs or ['any language'])}; "
                        f"its languages are {', '.join(have) or 'none'}.")
    return {lay: sorted(ns) for lay, ns in sorted(chosen.items())}


def restrict_to_neurons(hf_model: nn.Module, neurons: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    """Freeze everything but ``neurons``' MLP rows/columns of ``hf_model`` (in place); return the masks.

    ``neurons``: ``{layer: neuron indices}`` (:func:`read_neuron_file`). Returns ``{parameter
    name: 0/1 mask}``, 1 where a chosen neuron owns the entry, shaped to broadcast (``[d_mlp, 1]``
    for rows, ``[1, d_mlp]`` for columns, ``[d_mlp]`` for a bias).
    Raises DftlensError when a layer or neuron is out of the model's range (one sentence).
    """
    from ..models.mlp_layout import d_mlp, neuron_parameters

    width = d_mlp(hf_model)
    masks: dict[str, torch.Tensor] = {}
    params: dict[str, nn.Parameter] = {}
    for layer, units in neurons.items():
        if max(units) >= width:
            raise DftlensError(f"--train-neurons names neuron {max(units)} of layer {layer}, but this model's MLPs "
                               f"have {width} neurons (0..{width - 1}); was the file made for another model?")
        for part in neuron_parameters(hf_model, layer):  # DftlensError for a layer out of range
            p = part.param
            mask = masks.get(part.name)
            if mask is None:  # 1 along the neurons' axis, broadcast along the others (no full-size copy)
                mask = torch.zeros([n if d == part.dim else 1 for d, n in enumerate(p.shape)], device=p.device)
            mask.index_fill_(part.dim, part.index(torch.tensor(units)).to(p.device), 1)
            masks[part.name], params[part.name] = mask, p
    for p in hf_model.parameters():
        p.requires_grad_(False)
    for name, p in params.items():
        p.requires_grad_(True)
        p.register_hook(lambda grad, mask=masks[name]: grad * mask.to(grad.dtype))
    return masks
