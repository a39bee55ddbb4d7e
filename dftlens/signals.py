"""SIGTERM and SIGHUP handled like Ctrl-C (SIGINT).

Schedulers (SLURM, Kubernetes, systemd) send SIGTERM before they kill a job, and
closing a terminal sends SIGHUP; Python's default for both ends the process at once,
skipping every ``finally`` (the lock stays, a checkpoint is not saved). Inside
:func:`stop_raises` (every CLI command) they raise :class:`Stopped`, a
``KeyboardInterrupt``, so the same clean-up runs as for Ctrl-C; :func:`stop_flag`
(the training loop) turns the first of any of the three into a flag checked between
steps and the second into :class:`Stopped` at once. Exit code: 128 + the signal number
(130 SIGINT, 143 SIGTERM, 129 SIGHUP), as shells report them.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal turned into ``KeyboardInterrupt``; ``signum`` is the signal, ``name`` e.g. ``"SIGTERM"``."""

    def __init__(self, signum: int = signal.SIGINT):
        """Stopped by signal ``signum``."""
        super().__init__(signal.Signals(signum).name)
        self.signum, self.name = int(signum), signal.Signals(signum).name


def exit_code(exc: BaseException) -> int:
    """The exit code for a stop: 128 + its signal number (130 for a plain Ctrl-C)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


@contextmanager
def _handlers(handler, signums) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def stop_raises() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise :class:`Stopped` (SIGINT keeps raising KeyboardInterrupt)."""
    def handler(signum, frame):
        raise Stopped(signum)

    with _handlers(handler, [s for s in STOP_SIGNALS if s != signal.SIGINT]):
        yield


@contextmanager
def stop_flag(message: str) -> Iterator[dict]:
    """Yield ``{"set": False, "signum": None}``; the first SIGINT/SIGTERM/SIGHUP sets it (printing
    ``message`` after the signal's name), the second raises :class:`Stopped`."""
    flag = {"set": False, "signum": None}

    def handler(signum, frame):
        if flag["set"]:
            raise Stopped(signum)
        flag["set"], flag["signum"] = True, signum
        print(f"\n{signal.Signals(signum).name}: {message}", flush=True)

    with _handlers(handler, STOP_SIGNALS):
        yield flag
