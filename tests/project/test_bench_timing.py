"""The benchmarks' timing helper reports the machine's load and flags a run taken under load."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import timing  # noqa: E402


def test_load_is_read_around_the_timed_loop_and_flagged_above_the_limit(monkeypatch, capsys):
    cores = os.cpu_count() or 1
    loads = iter([0.5 * cores, timing.LOAD_LIMIT * cores + 1.0])
    monkeypatch.setattr(timing, "_LOADS", [])
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    medians = timing.interleaved_medians({"a": lambda: None, "b": lambda: None}, repeats=2, warmup=0)
    assert set(medians) == {"a", "b"} and len(timing._LOADS) == 2
    timing.print_ratios({"a": 1.0, "b": 2.0}, "a")
    out = capsys.readouterr().out
    assert "2.000" in out and "LOADED" in out and f"on {cores} cores" in out


def test_a_quiet_machine_is_not_flagged(monkeypatch):
    monkeypatch.setattr(timing, "_LOADS", [])
    monkeypatch.setattr(timing.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    line, ok = timing.load_report()
    assert ok and "LOADED" not in line and "0.10" in line
