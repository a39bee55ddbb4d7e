"""TransformerLens hook names: the one vocabulary dftlens speaks.

``blocks.{l}.hook_{site}`` with ``l`` a 0-based block index. The sites follow the
residual stream through a block, in execution order::

    resid_pre -> (+ attn_out) -> resid_mid -> (+ mlp_out) -> resid_post

``attn_out`` and ``mlp_out`` are what the block adds to the stream (for Gemma,
after its post-attention / post-feed-forward norms), so
``resid_mid == resid_pre + attn_out`` and ``resid_post == resid_mid + mlp_out``.

One more site is not on the residual stream: ``blocks.{l}.mlp.hook_post``
(:data:`NEURON_SITE`, ``"mlp_post"``), the MLP's hidden activation, i.e. the
input of its down/output projection (``act(gate) * up`` for gated MLPs,
``act(fc_in)`` otherwise), ``[batch, seq, d_mlp]``: the "neurons" of Tang et
al. 2024. TransformerLens names it the same way.
"""

from __future__ import annotations

import re

from ..errors import LayerError

SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
NEURON_SITE = "mlp_post"  # blocks.{l}.mlp.hook_post: the MLP hidden activation [batch, seq, d_mlp]
# Every site in the order a forward pass reaches it (the MLP's hidden units come before its output).
ORDER = ("resid_pre", "attn_out", "resid_mid", NEURON_SITE, "mlp_out", "resid_post")
_PATTERN = re.compile(r"^blocks\.(\d+)\.(?:hook_(" + "|".join(SITES) + r")|mlp\.hook_(post))$")


def hook_name(layer: int, site: str = "resid_post") -> str:
    """``blocks.{layer}.hook_{site}`` (``blocks.{layer}.mlp.hook_post`` for :data:`NEURON_SITE`).

    The layer is not range-checked (``LensModel.hook_name`` is).

    Raises:
        LayerError: ``site`` is not one of :data:`ORDER`.
    """
    if site == NEURON_SITE:
        return f"blocks.{int(layer)}.mlp.hook_post"
    if site not in SITES:
        raise LayerError(f"Unknown hook site {site!r}; use one of {', '.join(ORDER)}.")
    return f"blocks.{int(layer)}.hook_{site}"


def parse_hook_name(name: str) -> tuple[int, str]:
    """``'blocks.3.hook_resid_post'`` -> ``(3, 'resid_post')``; ``'blocks.3.mlp.hook_post'`` -> ``(3, 'mlp_post')``.

    Raises:
        LayerError: not a hook name of that form.
    """
    match = _PATTERN.match(name)
    if not match:
        raise LayerError(
            f"{name!r} is not a dftlens hook name; expected blocks.<layer>.hook_<site> "
            f"with site one of {', '.join(SITES)}, or blocks.<layer>.mlp.hook_post."
        )
    return int(match.group(1)), match.group(2) or NEURON_SITE


def execution_order(name: str) -> tuple[int, int]:
    """Sort key: the order in which a forward pass reaches each hook."""
    layer, site = parse_hook_name(name)
    return layer, ORDER.index(site)
