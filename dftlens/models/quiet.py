"""Silence one known-harmless transformers deprecation message, narrowly, by its text.

transformers (5.x) renamed the key-value cache argument ``past_key_values`` to ``cache``
and logs "`past_key_values`/`cache_params` are deprecated. Use `cache` instead." from
``transformers.utils.generic`` (older releases raised it as a ``FutureWarning``) whenever
the old name is passed or read. dftlens passes the old name on purpose (the name every
supported transformers release accepts, and the one TransformerLens' bridge reads), so the
line is noise in patch, train and the notebooks. Only records whose message starts with
that text are dropped; every other transformers message is kept.
"""

from __future__ import annotations

import logging
import warnings

CACHE_RENAME_MESSAGE = "`past_key_values`/`cache_params` are deprecated"
# The logger transformers logs the message from; a filter on it sees only its own records.
_LOGGER = "transformers.utils.generic"


class _DropCacheRename(logging.Filter):
    """Drops the cache-rename deprecation record; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(CACHE_RENAME_MESSAGE)


def silence_cache_rename_warning() -> None:
    """Drop transformers' ``past_key_values`` deprecation message (log record or FutureWarning).

    Idempotent: the filter is installed once. Other messages of the same logger and other
    FutureWarnings are untouched.
    """
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, _DropCacheRename) for f in logger.filters):
        logger.addFilter(_DropCacheRename())
    warnings.filterwarnings("ignore", message=r".*past_key_values.*deprecated", category=FutureWarning)
