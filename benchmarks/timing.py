"""Side-by-side timing: run the candidates interleaved, report medians and ratios, and the load.

The machine is shared and noisy, so absolute seconds mean little; two things
measured in the same loop, one right after the other, give a stable ratio. A
ratio taken while other jobs compete is still not an idle one (the bare forward
and the lens do not slow alike), so every benchmark prints the machine's load
average (``os.getloadavg``) before and after its timed loop and flags the run
when either 1-minute value exceeds :data:`LOAD_LIMIT` per core: the benchmark
itself keeps at most every core busy (load = cores), so more means other jobs.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

LOAD_LIMIT = 1.25  # 1-minute load average per core above which a run is flagged as taken under load
_LOADS: list[float] = []  # 1-minute load averages read around the timed loops of this process


def machine_load() -> float:
    """The 1-minute load average now (``os.getloadavg()[0]``), also kept for :func:`load_report`."""
    load = os.getloadavg()[0]
    _LOADS.append(load)
    return load


def load_report() -> tuple[str, bool]:
    """A line with the loads read so far and the core count, and whether it stays within
    :data:`LOAD_LIMIT` per core (False: the run was taken under load, flagged in the line)."""
    cores = os.cpu_count() or 1
    loads = _LOADS or [machine_load()]
    worst = max(loads)
    ok = worst <= LOAD_LIMIT * cores
    seen = ", ".join(f"{x:.2f}" for x in loads)
    verdict = "idle enough" if ok else (f"LOADED: above {LOAD_LIMIT} per core; these ratios are not idle numbers, "
                                        "re-run alone before reporting them")
    return f"machine load (1-min avg) {seen} on {cores} cores: {verdict}", ok


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each candidate over ``repeats`` interleaved rounds (after ``warmup``);
    the load is read before and after the timed rounds (:func:`load_report`)."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    machine_load()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    machine_load()
    return {name: statistics.median(s) for name, s in samples.items()}


def print_ratios(medians: dict[str, float], baseline: str, extra: dict[str, str] | None = None) -> None:
    """A table of medians and their ratios to ``baseline``, then the load line."""
    base = medians[baseline]
    print(f"{'candidate':<42} {'median s':>9} {'ratio':>7}")
    for name, value in medians.items():
        note = f"  {extra[name]}" if extra and name in extra else ""
        print(f"{name:<42} {value:>9.3f} {value / base:>7.3f}{note}")
    print(load_report()[0])
