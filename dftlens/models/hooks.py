"""TransformerLens hook names: the one vocabulary dftlens speaks.

``blocks.{l}.hook_{site}`` with ``l`` a 0-based block index. The sites follow the
residual stream through a block, in execution order::

    resid_pre -> (+ attn_out) -> resid_mid -> (+ mlp_out) -> resid_post

``attn_out`` and ``mlp_out`` are what the block adds to the stream (for Gemma,
after its post-attention / post-feed-forward norms), so
``resid_mid == resid_pre + attn_out`` and ``resid_post == resid_mid + mlp_out``.
"""

from __future__ import annotations

import re

from ..errors import LayerError

SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
_PATTERN = re.compile(r"^blocks\.(\d+)\.hook_(" + "|".join(SITES) + r")$")


def hook_name(layer: int, site: str = "resid_post") -> str:
    """``blocks.{layer}.hook_{site}``; the layer is not range-checked (``LensModel.hook_name`` is).

    Raises:
        LayerError: ``site`` is not one of :data:`SITES`.
    """
    if site not in SITES:
        raise LayerError(f"Unknown hook site {site!r}; use one of {', '.join(SITES)}.")
    return f"blocks.{int(layer)}.hook_{site}"


def parse_hook_name(name: str) -> tuple[int, str]:
    """``'blocks.3.hook_resid_post'`` -> ``(3, 'resid_post')``."""
    match = _PATTERN.match(name)
    if not match:
        raise LayerError(
            f"{name!r} is not a dftlens hook name; expected blocks.<layer>.hook_<site> "
            f"with site one of {', '.join(SITES)}."
        )
    return int(match.group(1)), match.group(2)


def execution_order(name: str) -> tuple[int, int]:
    """Sort key: the order in which a forward pass reaches each hook."""
    layer, site = parse_hook_name(name)
    return layer, SITES.index(site)
