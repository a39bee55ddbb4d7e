"""Offline guards around lm-eval: no network unless asked, quiet logs, telling missing data apart.

Loading is offline by default (``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``):
a benchmark whose data is not on this machine fails at once instead of waiting on
network time-outs (:func:`datasets_offline`), and :func:`is_missing_data` tells such a
failure from a broken task so that it becomes a "how to get the data" note.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

DATASETS_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE")


@contextmanager
def datasets_offline(offline: bool = True) -> Iterator[None]:
    """Make ``datasets`` and ``huggingface_hub`` fail fast instead of reaching the network."""
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in DATASETS_OFFLINE_ENV}
    saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
    for key in DATASETS_OFFLINE_ENV:
        os.environ[key] = "1"
    datasets.config.HF_HUB_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def quiet_lm_eval(level: int = logging.ERROR) -> Iterator[None]:
    """lm-eval logs every default it fills in; keep the console to what matters."""
    names = ("lm_eval", "lm-eval", "datasets")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(level)
    try:
        yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


_MISSING_DATA = ("offline", "couldn't reach", "couldn't find", "doesn't exist", "does not exist",
                 "not found", "no such file", "connection", "cannot find", "localentrynotfound")


def is_missing_data(exc: BaseException) -> bool:
    """Whether a task's loading error means its data is not on this machine (vs. a broken task)."""
    if isinstance(exc, (ConnectionError, FileNotFoundError)):
        return True
    text = f"{type(exc).__name__} {exc}".lower()
    return any(marker in text for marker in _MISSING_DATA)
