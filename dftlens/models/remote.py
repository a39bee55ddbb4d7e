"""NDIF: a model built from its Hugging Face id with meta weights, run remotely through nnsight.

Nothing is downloaded but the config and the tokenizer; every trace runs on NDIF
(``remote=True``), and the probe's logit-lens measurement runs inside the trace
(:mod:`dftlens.analysis.lens_in_trace`), so only a few numbers per layer and
prompt come back. Needs network access and an NDIF API key (``NDIF_API_KEY`` or
``nnsight.CONFIG.set_default_api_key(...)``); without them, one sentence.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import DftlensError
from .aliases import lookup
from .architecture import check_supported

KEY_HELP = "set NDIF_API_KEY or call nnsight.CONFIG.set_default_api_key(...) (keys: https://login.ndif.us)"


def load_remote(name: str, lens_chunk: int | None = None):
    """A :class:`LensModel` on NDIF for ``name`` (an alias or a Hugging Face id NDIF serves).

    Raises DftlensError: a local path or .gguf (NDIF serves hub models only), no
    API key, or the config/tokenizer cannot be fetched (no network).
    """
    from nnsight import CONFIG, LanguageModel

    from .engines import NNsightEngine, nnsight_module
    from .interface import LensModel

    spec = lookup(name)
    hf_id = spec.hf_id if spec else name
    if Path(name).expanduser().exists() or name.endswith(".gguf") or "/" not in hf_id:
        raise DftlensError(f"remote=True runs models NDIF serves by their Hugging Face id (owner/name); "
                           f"{name!r} is not one.")
    if not CONFIG.API.APIKEY:
        raise DftlensError(f"Running {hf_id} on NDIF needs an API key: {KEY_HELP}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LanguageModel(hf_id, trust_remote_code=False)  # meta weights: config and tokenizer only
    except Exception as exc:  # offline, unknown id, gated repo: one sentence for all
        raise DftlensError(
            f"Could not fetch the config and tokenizer of {hf_id} ({type(exc).__name__}): running on NDIF needs "
            "network access to huggingface.co and api.ndif.us."
        ) from None
    hf_model = nnsight_module(model)  # the meta-weight Hugging Face model inside
    check_supported(hf_model.config, type(hf_model).__name__)
    engine = NNsightEngine(hf_model, model.tokenizer, name, remote=True, nnsight_model=model)
    return LensModel(hf_model, model.tokenizer, engine, name=name, path=None, lens_chunk=lens_chunk)
