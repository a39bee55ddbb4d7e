"""Writing activations: replace or add to a hook's activation at chosen rows and positions.

An :class:`Edit` names one hook (``blocks.{l}.hook_{site}``), the batch rows it
touches, the positions in each of those rows, and the new value: a tensor, or a
function of the current activation at those places. ``LensModel.intervene``
applies a list of edits during one forward pass on either engine and captures
named activations (and their logit lens) in the same pass.

Shapes: the activation at a hook is ``[batch, seq, d_model]``. An edit selects
``R`` rows (``rows``; default all) and ``k`` positions per row (``positions``):

- ``"last"``: each row's last real token (k = 1; left or right padding alike);
- ``None``: every position (k = seq);
- a LongTensor ``[R]`` (one position per row) or ``[R, k]``. Negative positions
  count back from each row's last real token: ``-1`` is the last, ``-2`` the one
  before, whatever the padding.

The value is broadcast to ``[R, k, d_model]``; ``[R, d_model]`` is accepted when
``k == 1`` and ``[d_model]`` means the same vector everywhere. A callable gets the
current ``[R, k, d_model]`` slice and returns the new one. ``mode="add"`` adds the
value to the activation instead of replacing it (steering). Edits are applied
out of place (``index_put``), so gradients flow to both the model and the value.
Several edits on one hook apply in list order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import DftlensError

Value = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
MODES = ("replace", "add")


@dataclass
class Edit:
    """One write into a hook's activation ``[batch, seq, d_model]`` (shapes: module docstring).

    Fields: ``hook`` (hook name); ``value`` (a tensor broadcast to ``[R, k, d_model]``, or a
    callable of the current ``[R, k, d_model]`` slice); ``positions`` (``"last"``, None for
    every position, or a LongTensor ``[R]`` or ``[R, k]``, negative counting back from each
    row's last real token); ``rows`` (LongTensor ``[R]``; None: all rows); ``mode``
    (``"replace"`` or ``"add"``).

    Raises:
        DftlensError: at construction, for an unknown ``mode`` or a ``positions`` string other
            than ``"last"``.
    """

    hook: str
    value: Value
    positions: Union[None, str, torch.Tensor] = "last"
    rows: torch.Tensor | None = None  # LongTensor [R] of batch rows; None = all rows
    mode: str = "replace"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DftlensError(f"Edit mode {self.mode!r} is unknown; use one of {', '.join(MODES)}.")
        if isinstance(self.positions, str) and self.positions != "last":
            raise DftlensError(f"Edit positions must be None, 'last' or a tensor, not {self.positions!r}.")


def _index(edit: Edit, mask: torch.Tensor, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row index [R, k], position index [R, k]) of the places ``edit`` writes."""
    device = mask.device
    rows = (torch.arange(mask.shape[0], device=device) if edit.rows is None
            else torch.as_tensor(edit.rows, device=device).long().reshape(-1))
    last = (mask.bool() * (torch.arange(mask.shape[1], device=device) + 1)).argmax(dim=1)[rows]  # [R]
    if edit.positions is None:
        pos = torch.arange(seq, device=device).expand(len(rows), seq)
    elif isinstance(edit.positions, str):
        pos = last.unsqueeze(1)
    else:
        pos = torch.as_tensor(edit.positions, device=device).long()
        pos = pos.unsqueeze(1) if pos.dim() == 1 else pos
        if pos.shape[0] != len(rows):
            raise DftlensError(f"Edit on {edit.hook}: {pos.shape[0]} rows of positions for {len(rows)} rows.")
        pos = torch.where(pos < 0, last.unsqueeze(1) + 1 + pos, pos)
    if len(rows) and (pos.min() < 0 or pos.max() >= seq):
        raise DftlensError(f"Edit on {edit.hook}: a position is outside the {seq} tokens of the batch.")
    return rows.unsqueeze(1).expand_as(pos), pos


def apply_edit(act: torch.Tensor, edit: Edit, mask: torch.Tensor) -> torch.Tensor:
    """``act`` [batch, seq, d] with ``edit`` applied (a new tensor; ``act`` is untouched)."""
    r, p = _index(edit, mask, act.shape[1])
    current = act[r, p]  # [R, k, d]
    new = edit.value(current) if callable(edit.value) else edit.value
    new = torch.as_tensor(new, device=act.device)
    if new.dim() == 2 and new.shape[0] == r.shape[0] and r.shape[1] == 1:
        new = new.unsqueeze(1)  # [R, d] for one position per row
    new = new.to(act.dtype).expand_as(current)
    if edit.mode == "add":
        new = current + new
    return act.index_put((r, p), new)


class EditPlan:
    """The edits of one forward pass grouped by hook, applied by the engines."""

    def __init__(self, edits: list[Edit], mask: torch.Tensor):
        """Group ``edits`` by hook, keeping their list order within a hook.

        ``mask``: the batch's attention mask ``[batch, seq]``, which places ``"last"`` and negative
        positions.
        """
        self.mask = mask
        self.by_hook: dict[str, list[Edit]] = {}
        for edit in edits:
            self.by_hook.setdefault(edit.hook, []).append(edit)

    @property
    def hooks(self) -> list[str]:
        """The hook names that have edits, in the order of their first edit."""
        return list(self.by_hook)

    def __call__(self, name: str, act: torch.Tensor) -> torch.Tensor:
        for edit in self.by_hook.get(name, ()):
            act = apply_edit(act, edit, self.mask)
        return act


__all__ = ["Edit", "EditPlan", "apply_edit", "MODES"]
