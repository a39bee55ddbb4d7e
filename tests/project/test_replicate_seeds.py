"""benchmarks/replicate_small.py over seeds: the paired SEs, the paper recipe, resuming and splitting."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dft_data import instruction_rows, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import replicate_runs  # noqa: E402
import replicate_small  # noqa: E402

from dftlens.analysis.stats import paired_over_seeds  # noqa: E402


def test_paired_over_seeds_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    ref = rng.normal(2.0, 0.5, size=(3, 20))
    var = ref + rng.normal(-0.05, 0.1, size=(3, 20)) + np.array([[0.02], [-0.01], [0.0]])
    got = paired_over_seeds(var, ref)
    diffs = [[var[s][i] - ref[s][i] for i in range(20)] for s in range(3)]
    per_example = [sum(diffs[s][i] for s in range(3)) / 3 for i in range(20)]
    per_seed = [sum(row) / 20 for row in diffs]

    def se(xs):
        m = sum(xs) / len(xs)
        return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))

    assert got["diff"] == pytest.approx(sum(per_seed) / 3)
    assert got["se_examples"] == pytest.approx(se(per_example))
    assert got["se_seeds"] == pytest.approx(se(per_seed))
    assert got["se"] == pytest.approx(math.sqrt(se(per_example) ** 2 + se(per_seed) ** 2))
    one = paired_over_seeds(var[:1], ref[:1])  # one seed: the ordinary paired SE over examples
    assert one["se_seeds"] == 0.0 and one["se"] == pytest.approx(se(diffs[0]))
    with pytest.raises(ValueError):
        paired_over_seeds(var, ref[:2])


def test_paper_recipe_is_full_fine_tuning_at_batch_128_for_three_epochs():
    paper = replicate_runs.make_recipe("paper", steps=60, n_train=295, batch_size=4)
    assert paper.train_fields() == {"lora": False, "lr": 2e-5, "batch_size": 4, "grad_accum": 32, "steps": 7}
    assert math.ceil(3 * 295 / 128) == 7 and paper.epochs == 3
    lora = replicate_runs.make_recipe("lora", steps=60, n_train=295)
    assert lora.train_fields() == {"lora": True, "lr": 2e-4, "batch_size": 4, "grad_accum": 1, "steps": 60}
    with pytest.raises(ValueError):
        replicate_runs.make_recipe("paper", steps=1, n_train=10, batch_size=3)


def test_shards_partition_the_jobs():
    jobs = replicate_runs.plan({"TFT": {}, "A": {}, "B": {}}, [0, 1, 2])
    assert [(j.seed, j.name) for j in jobs[:3]] == [(0, "TFT"), (0, "A"), (0, "B")]  # seed-major
    parts = [replicate_runs.shard(jobs, f"{k}/4") for k in range(4)]
    assert sorted((j.seed, j.name) for p in parts for j in p) == sorted((j.seed, j.name) for j in jobs)
    assert sum(len(p) for p in parts) == len(jobs)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError):
            replicate_runs.shard(jobs, bad)


def test_two_shards_then_a_rerun_train_each_job_once_and_pair_over_seeds(tiny_dirs, tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", instruction_rows(8))
    out = tmp_path / "rep"
    argv = ["--out", str(out), "--model", str(tiny_dirs["llama"]), "--data", str(data), "--seeds", "0,1",
            "--runs", "TFT,ET-only (logits)", "--steps", "2", "--lc-layer", "1", "--et-layer", "2",
            "--no-shipped", "--no-base", "--max-length", "256"]
    replicate_small.main(argv + ["--shard", "0/2"])
    first = {p.parent.name + p.parent.parent.name for p in out.glob("seed*/*/scores.json")}
    assert first == {"TFTseed0", "TFTseed1"}  # jobs 0 and 2 of [TFT/0, ET/0, TFT/1, ET/1]
    replicate_small.main(argv + ["--shard", "1/2"])
    finals = sorted(out.glob("seed*/*/final/run_config.json"))
    assert len(finals) == 4
    stamps = [p.stat().st_mtime_ns for p in finals]
    replicate_small.main(argv)  # everything scored: nothing trains again
    assert [p.stat().st_mtime_ns for p in finals] == stamps
    table = pd.read_csv(out / "heldout_paired_zh.csv").set_index("model")
    assert table.loc["ET-only (logits)", "seeds"] == "0,1"
    v = np.array([json.loads((out / f"seed{s}" / "ET-only_logits" / "scores.json").read_text())["heldout"]["zh"]
                  for s in (0, 1)])
    r = np.array([json.loads((out / f"seed{s}" / "TFT" / "scores.json").read_text())["heldout"]["zh"]
                  for s in (0, 1)])
    expect = paired_over_seeds(v, r)
    assert table.loc["ET-only (logits)", "diff_vs_TFT"] == pytest.approx(expect["diff"])
    assert table.loc["ET-only (logits)", "se"] == pytest.approx(expect["se"])
    assert not np.allclose(r[0], r[1])  # the seeds really differ (data order)
    logs = pd.read_csv(out / "train_logs.csv")
    assert sorted(set(zip(logs["model"], logs["seed"]))) == [("ET-only (logits)", 0), ("ET-only (logits)", 1),
                                                             ("TFT", 0), ("TFT", 1)]


def test_contrastive_and_neuron_variants_follow_tft():
    args = replicate_small.parse_args(["--contrastive", "lc,et", "--temperature", "0.2", "--neurons", "n.csv",
                                       "--feature-norms", "standardize", "--feature-weight", "0.1"])
    runs, sweep = replicate_small.plan_runs(args, ["standardize"], [])
    assert list(runs)[:4] == ["TFT", "Contrastive-LC", "Contrastive-ET", "TFT-neurons"] and not sweep
    assert runs["Contrastive-LC"]["lc_signal"] == "contrastive" and runs["Contrastive-LC"]["et_signal"] == "off"
    assert runs["Contrastive-ET"]["et_signal"] == "contrastive" and runs["Contrastive-ET"]["temperature"] == 0.2
    assert runs["TFT-neurons"] == {**runs["TFT"], "train_neurons": "n.csv", "lora": False}
    assert runs["DFT-feature (standardize w=0.1)"]["w_lc"] == 0.1
