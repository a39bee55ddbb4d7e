"""Seeds, recipes and resumable, splittable runs for ``benchmarks/replicate_small.py``.

A replication is a list of :class:`Job` (one training run: a variant at a seed),
planned by :func:`plan` (seed-major: every variant of seed 0, then of seed 1, ...)
and split over processes by :func:`shard` (job ``k`` of ``n``: every ``n``-th job).
:func:`run_job` trains a job and scores it right away, writing ``scores.json`` in
its run directory; a job whose ``scores.json`` exists is skipped, a run cut before
``final/`` resumes from its last checkpoint, so rerunning the same command resumes
the replication. :func:`collect` reads every finished job back for the tables.

Seed ``s`` sets the training seed (data order, LoRA initialisation) and the probe's
seed (its demonstrations and splits, hence the layers chosen for that seed's runs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

SCORES = "scores.json"
PAPER_BATCH = 128  # Huo et al. (AAAI 2025): 8 x A100, batch 128, 3 epochs, lr 2e-5, full fine-tuning


@dataclass(frozen=True)
class Recipe:
    """The optimisation settings shared by every run of a replication.

    ``lora``: LoRA r 16 (else full fine-tuning); ``lr``: peak learning rate;
    ``batch_size`` x ``grad_accum``: examples per optimizer step; ``steps``: optimizer
    steps; ``epochs``: passes over the training data the steps make (None: set by steps).
    """

    name: str
    lora: bool
    lr: float
    batch_size: int
    grad_accum: int
    steps: int
    epochs: float | None = None

    def train_fields(self) -> dict:
        """The :class:`~dftlens.dft.config.TrainConfig` fields this recipe sets."""
        return {"lora": self.lora, "lr": self.lr, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                "steps": self.steps}


def make_recipe(name: str, steps: int, n_train: int, batch_size: int = 4, epochs: float = 3.0) -> Recipe:
    """``lora``: LoRA, lr 2e-4, batch ``batch_size``, ``steps`` steps (this script's earlier setting).

    ``paper``: the paper's recipe (Huo et al., AAAI 2025): full fine-tuning, lr 2e-5,
    batch 128 reached by accumulating micro-batches of ``batch_size`` (128 must be a
    multiple of it), ``epochs`` passes over the ``n_train`` training examples
    (``ceil(epochs * n_train / 128)`` steps). Raises ValueError for another name.
    """
    if name == "lora":
        return Recipe("lora", True, 2e-4, batch_size, 1, steps)
    if name == "paper":
        if PAPER_BATCH % batch_size:
            raise ValueError(f"--batch-size must divide the paper's batch of {PAPER_BATCH}, not {batch_size}")
        accum = PAPER_BATCH // batch_size
        return Recipe("paper", False, 2e-5, batch_size, accum, max(1, math.ceil(epochs * n_train / PAPER_BATCH)),
                      epochs)
    raise ValueError(f"--recipe must be lora or paper, not {name!r}")


def slug(name: str) -> str:
    """A run name as a directory name (``DFT-feature (none)`` -> ``DFT-feature_none``)."""
    return name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "").replace("=", "")


@dataclass(frozen=True)
class Job:
    """One training run: variant ``name`` at ``seed``; ``fields`` are its TrainConfig fields (signals, weights)."""

    name: str
    seed: int
    fields: dict = field(default_factory=dict, hash=False, compare=False)
    et_layer: int | None = None  # an ET sweep's layer (None: the seed's probe layer)

    def run_dir(self, out: Path) -> Path:
        """``out/seed<seed>/<slug of name>``."""
        return Path(out) / f"seed{self.seed}" / slug(self.name)


def plan(variants: dict[str, dict], seeds: list[int], sweep: dict[str, int] | None = None) -> list[Job]:
    """Seed-major job list: every variant (in the given order), then every ET sweep run, per seed."""
    sweep = sweep or {}
    return [Job(name, seed, spec, sweep.get(name)) for seed in seeds for name, spec in variants.items()]


def shard(jobs: list[Job], spec: str) -> list[Job]:
    """Process ``k`` of ``n``'s jobs (``spec`` "k/n", 0-based): jobs ``k, k+n, k+2n, ...``; ValueError if malformed."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must read k/n (e.g. 0/2), not {spec!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard k/n needs 0 <= k < n, not {spec!r}")
    return jobs[k::n]


def run_job(job: Job, out: Path, train_fields: dict, layers: tuple[int, int],
            score: Callable[[str], dict], log: Callable[[str], None] = print) -> dict:
    """Train ``job`` (or resume it) and score its ``final/`` with ``score``; return and save the scores.

    ``train_fields``: the TrainConfig fields shared by all jobs (model, data, recipe ...);
    ``layers``: the seed's (LC, ET) layers; ``score(path) -> dict`` of JSON-able scores.
    Skips a job whose ``scores.json`` exists; resumes a run that has a checkpoint but no ``final/``.
    """
    from dftlens.dft.checkpoint import checkpoint_step
    from dftlens.dft.config import TrainConfig
    from dftlens.dft.trainer import train

    run_dir = job.run_dir(out)
    if (run_dir / SCORES).exists():
        log(f"{job.name} seed {job.seed}: already scored ({run_dir})")
        return json.loads((run_dir / SCORES).read_text(encoding="utf-8"))
    final = run_dir / "final"
    if checkpoint_step(final) is None:
        lc, et = layers
        cfg = TrainConfig(**{**train_fields, **job.fields, "out": str(run_dir), "seed": job.seed, "lc_layer": lc,
                             "et_layer": job.et_layer if job.et_layer is not None else et})
        started = any(checkpoint_step(d) is not None for d in run_dir.glob("checkpoint-*"))
        train(cfg, resume=run_dir if started else None, overwrite=not started, progress=False)
    scores = score(str(final))
    (run_dir / SCORES).write_text(json.dumps(scores), encoding="utf-8")
    return scores


def collect(out: Path, jobs: list[Job]) -> dict[str, dict[int, dict]]:
    """``{variant: {seed: scores}}`` of every job of ``jobs`` that has a ``scores.json`` under ``out``."""
    found: dict[str, dict[int, dict]] = {}
    for job in jobs:
        path = job.run_dir(out) / SCORES
        if path.exists():
            found.setdefault(job.name, {})[job.seed] = json.loads(path.read_text(encoding="utf-8"))
    return found


def paired_table(found: dict[str, dict[int, dict]], side: str, reference: str = "TFT") -> pd.DataFrame:
    """Held-out NLL on ``side`` per variant and its paired difference to ``reference`` over examples and seeds.

    Only seeds where both the variant and the reference are scored are paired; the
    standard errors are :func:`dftlens.analysis.stats.paired_over_seeds`'s.
    """
    from dftlens.analysis.stats import paired_over_seeds

    ref = found.get(reference, {})
    rows = []
    for name, by_seed in found.items():
        seeds = sorted(s for s in by_seed if s in ref)
        if not seeds:
            continue
        v = np.array([by_seed[s]["heldout"][side] for s in seeds])
        r = np.array([ref[s]["heldout"][side] for s in seeds])
        row = {"model": name, "nll": float(v.mean()), "seeds": ",".join(map(str, seeds))}
        if name == reference:
            row.update({"diff_vs_" + reference: 0.0, "se": 0.0, "se_examples": 0.0, "se_seeds": 0.0,
                        "beyond_2se": False})
        else:
            p = paired_over_seeds(v, r)
            row.update({"diff_vs_" + reference: p["diff"], "se": p["se"], "se_examples": p["se_examples"],
                        "se_seeds": p["se_seeds"], "beyond_2se": bool(abs(p["diff"]) > 2 * p["se"])})
        rows.append(row)
    return pd.DataFrame(rows)


def shipped_table(found: dict[str, dict[int, dict]], reference: str = "TFT") -> pd.DataFrame:
    """Shipped-task metrics: mean over seeds, and the difference to ``reference`` with its SE across seeds.

    The per-seed difference is paired on the seed (same seed, same documents); its SE
    is ``sd / sqrt(n_seeds)`` (NaN with one seed: use the per-run stderr then).
    """
    rows = []
    for name, by_seed in found.items():
        for seed, scores in by_seed.items():
            for r in scores.get("shipped", []):
                rows.append({**r, "model": name, "seed": seed})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["task", "language", "metric"]
    ref = frame[frame["model"] == reference].set_index(keys + ["seed"])["value"]
    frame["diff"] = frame.set_index(keys + ["seed"]).index.map(lambda k: ref.get(k, np.nan))
    frame["diff"] = frame["value"] - frame["diff"]
    out = frame.groupby(["model"] + keys, sort=False).agg(
        value=("value", "mean"), stderr=("stderr", "mean"), n_seeds=("seed", "nunique"),
        diff_vs_TFT=("diff", "mean"), diff_sd=("diff", "std")).reset_index()
    out["se_seeds"] = out["diff_sd"] / np.sqrt(out["n_seeds"])
    return out.drop(columns="diff_sd")


def signal_fields(lc: str, et: str, norm: str, weight: float) -> dict:
    """The TrainConfig fields of one variant: its LC/ET signals, feature norm and feature weights."""
    return {"lc_signal": lc, "et_signal": et, "feature_norm": norm, "w_lc": weight if lc == "feature" else 1.0,
            "w_et": weight if et == "feature" else 1.0}


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (SystemExit with one sentence when malformed or repeated)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds must be a comma list of integers such as 0,1,2, not {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds must list distinct integers such as 0,1,2, not {text!r}.")
    return seeds
