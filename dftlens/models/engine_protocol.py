"""The engine protocol and the capture contract: what an engine does and what ``LensModel.capture`` returns.

:class:`Engine` is the protocol both engines (TransformerLens ``TransformerBridge``,
nnsight) implement; :class:`Capture` the activations read at hook names, reduced to
the requested positions; :data:`Positions` which positions are kept, with the
position helpers the interface and the engines share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, ItemsView, Iterator, KeysView, Protocol, Union

import torch

# Which positions capture() keeps; the shapes it returns are documented on LensModel.capture.
Positions = Union[None, str, torch.Tensor]


class Engine(Protocol):
    """Runs a forward pass and hands each requested activation to ``keep``.

    The engine calls ``keep(name, tensor)`` in execution order and stops the
    forward pass once the last requested hook has fired: nothing above it runs.
    With ``edit`` (an ``interventions.EditPlan``: ``edit.hooks`` and
    ``edit(name, act) -> new act``) the activation at each hook in ``edit.hooks``
    is replaced by the plan's result before anything later reads it.
    """

    name: str

    def run(self, batch: dict, names: list[str], keep: Callable[[str, torch.Tensor], None],
            edit: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        """One forward pass over ``batch`` calling ``keep(name, activation)`` for each of ``names``.

        ``names`` are hook names in execution order; the pass stops after the last one. With
        ``edit`` (an ``EditPlan``) the activations at ``edit.hooks`` are replaced first, and
        ``keep`` gets the edited ones.
        """


@dataclass
class Capture:
    """Activations read at named hooks, already reduced to the requested positions.

    Shapes by ``positions`` are the table in :meth:`LensModel.capture`: ``[b, t, d]``
    (None), ``[b, d]`` ("last"), ``[b, k, d]`` (a ``[b, k]`` or ``[b]`` index, k = 1).
    :meth:`stack` puts hooks first: ``[len(names), ...]``.
    """

    activations: dict[str, torch.Tensor]
    attention_mask: torch.Tensor
    positions: torch.Tensor | None = None  # the positions kept, [batch, k], if not all
    logits: dict[str, torch.Tensor] | None = None  # the logit lens of each activation (intervene(lens=...))

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.activations[name]

    def __contains__(self, name: str) -> bool:
        return name in self.activations

    def __iter__(self) -> Iterator[str]:
        """The hook names captured, in the order they were read (like a dict)."""
        return iter(self.activations)

    def __len__(self) -> int:
        return len(self.activations)

    def keys(self) -> KeysView[str]:
        """The hook names captured, in the order they were read."""
        return self.activations.keys()

    def items(self) -> ItemsView[str, torch.Tensor]:
        """``(hook name, activation)`` pairs, in the order they were read."""
        return self.activations.items()

    def stack(self, names: Iterable[str]) -> torch.Tensor:
        """[len(names), batch, ...] in the order given."""
        return torch.stack([self.activations[n] for n in names])


def gather_positions(act: torch.Tensor, index: torch.Tensor, drop: bool = False) -> torch.Tensor:
    """``act`` ``[b, t, d]`` at the positions ``index`` ``[b, k]``: ``[b, k, d]``; ``drop`` (k = 1): ``[b, d]``."""
    act = act.gather(1, index.unsqueeze(-1).expand(-1, -1, act.shape[-1]))
    return act[:, 0] if drop else act


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token; the same for left and right padding."""
    idx = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool() * (idx + 1)).argmax(dim=1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
