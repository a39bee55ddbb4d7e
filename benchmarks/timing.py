"""Side-by-side timing: run the candidates interleaved, report medians and ratios.

The machine is shared and noisy, so absolute seconds mean little; two things
measured in the same loop, one right after the other, give a stable ratio.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def print_ratios(medians: dict[str, float], baseline: str, extra: dict[str, str] | None = None) -> None:
    base = medians[baseline]
    print(f"{'candidate':<42} {'median s':>9} {'ratio':>7}")
    for name, value in medians.items():
        note = f"  {extra[name]}" if extra and name in extra else ""
        print(f"{name:<42} {value:>9.3f} {value / base:>7.3f}{note}")
