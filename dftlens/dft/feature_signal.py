"""The feature signal of the DFT losses: pooling, the cosine, and its normalisations.

``lc``/``et`` feature losses compare ``mean_q h`` of the English and the target
query (``1 - cos``, see :mod:`.losses`); this module holds what goes into that
comparison.

Feature normalisation (``feature_norm``, :data:`FEATURE_NORMS`). The paper's
form, ``none``, compares mean-pooled raw residuals; on real models a few
dimensions with huge, nearly constant values dominate every residual, so both
pooled vectors point almost the same way, the cosine is ~1 and the loss carries
little gradient. The variants change only what the cosine compares:

- ``center``: subtract ``mu_h``, a running mean of the residual at hook ``h``
  (per dimension, over the query tokens of both languages; detached; an
  exponential moving average with momentum :data:`RUNNING_MOMENTUM`, started from
  the first batch), from every token before pooling; the shared offset of the
  dominant dimensions goes away.
- ``standardize``: as ``center``, then divide each dimension by the running
  standard deviation ``sigma_h`` (same tokens, same average): every dimension
  weighs the same.
- ``rms``: divide each token's residual by its root mean square (no weight, eps
  1e-6) before pooling, as the model's RMSNorm does; tokens weigh the same, but
  dimensions keep their relative scale.

The running statistics (:class:`RunningStats`) live in the
:class:`~dftlens.dft.losses.DFTLoss` object (one per hook, both languages' tokens
of each micro-batch update them before use); a resumed run re-estimates them
from its first batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FEATURE_NORMS = ("none", "center", "standardize", "rms")
RUNNING_MOMENTUM = 0.9
RMS_EPS = 1e-6
STD_EPS = 1e-6


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[b, t, d] states, [b, t] mask -> [b, d] float32 mean over the masked positions."""
    mask = mask.to(states.dtype).unsqueeze(-1)
    return (states * mask).sum(1).float() / mask.sum(1).float().clamp(min=1)


def cosine_loss(english: torch.Tensor, target: torch.Tensor, denominator: float | None = None) -> torch.Tensor:
    """``1 - cos`` of [b, d] pairs, summed over examples / ``denominator`` (None: the mean)."""
    per = 1 - F.cosine_similarity(english.float(), target.float(), dim=-1, eps=1e-8)
    return per.mean() if denominator is None else per.sum() / denominator


def rms_normalise(states: torch.Tensor) -> torch.Tensor:
    """Each token's vector divided by its root mean square (float32, eps :data:`RMS_EPS`, no weight)."""
    states = states.float()
    return states * torch.rsqrt(states.pow(2).mean(-1, keepdim=True) + RMS_EPS)


class RunningStats:
    """Per-hook running mean and variance of residual states (detached, float32).

    ``update(hook, tokens [n, d])``: the first call sets ``mean`` and ``var`` to the
    tokens' mean and (population) variance per dimension; later calls move them by
    ``(1 - momentum)`` towards the new batch's values.
    """

    def __init__(self, momentum: float = RUNNING_MOMENTUM):
        """Empty statistics; ``momentum`` is the weight kept by the old values at each update."""
        self.momentum = momentum
        self.mean: dict[str, torch.Tensor] = {}
        self.var: dict[str, torch.Tensor] = {}

    def update(self, hook: str, tokens: torch.Tensor) -> None:
        """Fold the tokens ``[n, d]`` seen at ``hook`` into its running mean and variance."""
        tokens = tokens.detach().float()
        mean, var = tokens.mean(0), tokens.var(0, unbiased=False)
        if hook not in self.mean:
            self.mean[hook], self.var[hook] = mean, var
        else:
            m = self.momentum
            self.mean[hook] = m * self.mean[hook] + (1 - m) * mean
            self.var[hook] = m * self.var[hook] + (1 - m) * var
