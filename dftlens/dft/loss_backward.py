"""The DFT loss's backward: logits passes first, on detached copies of the reused keys/values.

:class:`StagedBackward` is mixed into :class:`~dftlens.dft.losses.DFTLoss` (it uses
that class's passes: ``main_pass``, ``logits_pass``, ``total``); it runs each pass's
backward before the next pass's forward, so that one pass's graph is alive at a time,
with the same gradients as ``components(batch)["loss"].backward()``
(tests/dft/test_dft_losses.py). Prefix reuse: :mod:`.prefix_reuse`.
"""

from __future__ import annotations

import torch

from .batches import Batch
from .prefix_reuse import detached, hand_back, reusable


class StagedBackward:
    """:meth:`backward` of :class:`~dftlens.dft.losses.DFTLoss` (a mixin: it needs that class's passes)."""

    def backward(self, batch: Batch, scale: float = 1.0, autocast=None,
                 norm: dict[str, float] | None = None, micro: int | None = None) -> dict[str, float]:
        """Accumulate ``scale * d loss`` into the parameters' ``.grad``.

        Order: main forward (keys/values recorded), then each logits pass forward
        and backward on detached copies of the reused keys/values, then one
        backward through the main pass that also carries those copies' gradients.
        With logits signals only, the main pass itself is split at the shared prefix
        (:meth:`_backward_split`), so that one pass's graph is alive at a time.
        Returns the components as floats, and ``<kind>_gnorm`` for feature losses.
        Same gradients as ``components(batch, norm)["loss"].backward()``.
        ``norm``: the step's denominators (:func:`step_norm`); the returned values are
        then this micro-batch's share of the step's means (they add up over micro-batches).
        ``micro``: as in :meth:`components`.
        """
        from contextlib import nullcontext

        ctx = autocast or nullcontext
        norm = norm or {}
        if self.reuse_prefix and self._logits_jobs(batch) and not self.feature_pairs():
            values = self._backward_split(batch, scale, ctx, norm)
            if values is not None:
                return values
        gnorms: dict[str, float] = {}
        with ctx():
            parts, recorded = self.main_pass(batch.main, *self._english(batch, micro), norm=norm,
                                           record=self._records(batch), gnorms=gnorms, micro=micro)
            main_total = self.total(parts)
        values = {k: float(v.detach()) for k, v in parts.items()}
        kv = recorded.pairs if recorded is not None else None
        leaves = []
        for kind, packed, hook, weight in self._logits_jobs(batch):
            lengths = reusable(self.lm, batch.main, [packed]) if kv else None
            prefix = None
            if lengths is not None and int(lengths.max()):
                prefix = detached(kv, int(lengths.max()), self.blocks_to(hook))
                leaves.append(prefix)
            with ctx():
                part = self.logits_pass(packed, hook, prefix, lengths, norm.get(kind))
            (part * (weight * scale)).backward()
            values[kind] = float(part.detach())
        tensors, grads = [main_total * scale], [torch.ones_like(main_total)]
        for prefix in leaves:  # hand the reused keys'/values' gradients to the main pass
            more = hand_back(kv, prefix)
            tensors += more[0]
            grads += more[1]
        torch.autograd.backward(tensors, grads)
        values.update(gnorms)
        return self._with_total(values)

    def _with_total(self, values: dict[str, float]) -> dict[str, float]:
        values["loss"] = values["tft"] + self.w_lc * values.get("lc", 0.0) + self.w_et * values.get("et", 0.0)
        return values

    def _backward_split(self, batch: Batch, scale: float, ctx, norm: dict[str, float]) -> dict[str, float] | None:
        """Logits signals only: the main pass split at the prefix it shares with the logits passes.

        The first ``P`` positions of the main pass (``P`` the longest row's shared
        prefix, :func:`reusable` over the main and logits passes) run once through
        every block, recording keys/values. Then L_TFT (the main pass's remainder)
        and each logits pass run on detached copies of them and backpropagate at
        once, freeing their graphs; last, one backward through the prefix carries
        the copies' summed gradients. Peak memory: the prefix's graph plus one
        remainder's, instead of the whole main pass's graph plus a logits pass's.
        Same losses and gradients (tests/dft/test_dft_losses.py). None: nothing shared.
        """
        jobs = self._logits_jobs(batch)
        lengths = reusable(self.lm, batch.main, [batch.main] + [packed for _, packed, _, _ in jobs])
        cached = int(lengths.max()) if len(lengths) else 0
        if cached == 0:
            return None
        # The main pass's own tokens up to P (a row's slots past its shared prefix hold its later
        # main-pass tokens, masked in every remainder, as when the whole main pass is cached).
        inputs = {k: v[:, :cached] for k, v in batch.main.model_inputs().items()}
        with ctx():
            _, prefix = self.lm.run_prefix(inputs, grad=True)
        kv = prefix.pairs
        leaves = detached(kv, cached, len(kv))
        values = {}
        for kind, packed, hook, weight, frozen in [("tft", batch.main, self.last_hook, 1.0, False),
                                                   *[(*job, True) for job in jobs]]:
            with ctx():
                part = self.logits_pass(packed, hook, leaves, lengths, norm.get(kind), frozen=frozen)
            (part * (weight * scale)).backward()
            values[kind] = float(part.detach())
        tensors, grads = hand_back(kv, leaves)
        if tensors:
            torch.autograd.backward(tensors, grads)
        return self._with_total(values)
