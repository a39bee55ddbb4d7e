"""notebooks/dft_before_after.ipynb: committed clean, and its short version runs end to end.

The short version (DFTLENS_NB_QUICK=1) probes the embedded model, trains TFT and
DFT-logits for two LoRA steps each, compares the three models on the same prompts and
scores them on a few held-out instructions, all in a temporary directory it removes.
The kernel is this test process's own interpreter, as in tests/project/test_notebooks.py.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from dftlens.layer_evidence import Evidence
from dftlens.layers import LayerChoice
from notebook_runner import _MARK, PLOTLY_MIME, execute, outputs  # noqa: F401

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "dft_before_after.ipynb"


def test_before_after_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "clear the notebook's outputs before committing"
    assert nb.metadata.kernelspec.name == "python3"


def test_before_after_has_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert re.search(r'^RESULTS_DIR = "runs/replicate"', tagged[0].source, re.M)


@pytest.mark.embedded
def test_before_after_notebook_runs_short_version(monkeypatch, tmp_path):
    monkeypatch.setenv("DFTLENS_NB_QUICK", "1")  # the kernel inherits this environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = execute(NOTEBOOK, cwd=tmp_path)

    assert not outputs(nb, "error")
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    # The kernel ran in this environment (the venv), and took the short path.
    marker = [line for line in text.splitlines() if _MARK in line]
    assert marker and marker[0].split()[-1] == sys.prefix
    assert "running the short version" in text and "Reading the replication" not in text

    # The figures: before/after latent language with LC/ET marked, entropy, training loss.
    figures = [o["data"][PLOTLY_MIME] for o in outputs(nb) if PLOTLY_MIME in o.get("data", {})]
    by_title = {f["layout"]["title"]["text"]: f for f in figures}
    latent = next(f for t, f in by_title.items()
                  if t.startswith("Latent language per layer: base vs TFT vs DFT-logits"))
    entropy = next(f for t, f in by_title.items() if t.startswith("Logit-lens entropy per layer: base vs TFT"))
    loss = by_title["Training loss per component"]
    for fig in (latent, entropy):
        labels = " ".join(a.get("text", "") for a in fig["layout"].get("annotations", []))
        assert re.search(r"\bLC \d+", labels) and re.search(r"\bET \d+", labels), labels
    loss_names = {t.get("name") for t in loss["data"]}
    assert {"TFT", "DFT-logits"} <= loss_names
    panels = {a["text"] for a in loss["layout"]["annotations"]}  # subplot titles
    assert {"total", "tft (target NLL)", "lc (LC layer)", "et (ET layer)"} <= panels

    # The tables: the per-layer summary, the results with standard errors, the differences to TFT.
    html = [o["data"]["text/html"] for o in outputs(nb, "execute_result") if "text/html" in o.get("data", {})]
    assert any("P(target)" in h and "ET (" in h for h in html)
    assert any("heldout_instructions" in h and "±" in h and "DFT-logits" in h for h in html)
    diffs = [h for h in html if "diff_vs_TFT" in h and "beyond_2se" in h]
    assert diffs and "paired" in diffs[0] and "DFT-logits" in diffs[0]
    assert re.search(r"\d+ of \d+ differences to TFT exceed 2 standard errors", text)

    # Everything went to a temporary directory, which the notebook removed; nothing in the cwd.
    removed = re.search(r"Removed the short version's directory (\S+) \(exists: (\w+)\)", text)
    assert removed and removed.group(2) == "False" and not Path(removed.group(1)).exists()
    assert not any(tmp_path.iterdir()), sorted(os.listdir(tmp_path))


def _fake_replication(out: Path) -> None:
    """The files benchmarks/replicate_small.py writes, with made-up numbers of known outcome."""
    (out / "probe").mkdir(parents=True)
    (out / "compare").mkdir()
    LayerChoice("gemma3-270m", 18, 3, 15, evidence=Evidence(lc_decided_by="alignment",
                                                             et_decided_by="english_onset")).save(out / "probe" / "layers.json")
    layers = np.arange(18)
    lens = []
    for i, model in enumerate(["base", "TFT", "DFT-logits"]):
        p_en = 0.05 * np.exp(-((layers - 14) / 2.0) ** 2) * (1 + 0.3 * i)
        p_tgt = 0.08 / (1 + np.exp(-(layers - 15.5))) * (1 + 0.2 * i)
        ent = 8 - 0.3 * layers + 0.1 * i
        frame = pd.DataFrame({"task": "translation", "input_lang": "fr", "target_lang": "zh", "layer": layers,
                              "n_items": 32, "p_input": 0.0, "p_input_lo": 0.0, "p_input_hi": 0.0,
                              "p_en": p_en, "p_target": p_tgt, "entropy_bits": ent, "model": model})
        for col in ("p_en", "p_target", "entropy_bits"):
            frame[f"{col}_lo"], frame[f"{col}_hi"] = frame[col] * 0.8, frame[col] * 1.2
        lens.append(frame)
    pd.concat(lens).to_csv(out / "compare" / "compare_lens.csv", index=False)
    variants = ["TFT", "DFT-logits", "DFT-feature", "LC-only (feature)", "ET-only (logits)"]
    signals = {"TFT": (None, None), "DFT-logits": (5.0, 3.0), "DFT-feature": (0.4, 0.6),
               "LC-only (feature)": (0.4, None), "ET-only (logits)": (None, 3.0)}
    logs = []
    for name in variants:
        steps = np.arange(1, 11)
        lc, et = signals[name]
        row = pd.DataFrame({"step": steps, "tft": 3.0 / np.sqrt(steps), "model": name})
        row["lc"] = lc / steps if lc else np.nan
        row["et"] = et / steps if et else np.nan
        row["loss"] = row[["tft", "lc", "et"]].sum(axis=1)
        logs.append(row)
    pd.concat(logs).to_csv(out / "train_logs.csv", index=False)
    models = ["base"] + variants
    rows = []
    for i, m in enumerate(models):
        rows += [{"model": m, "task": "heldout_instructions", "language": "zh", "metric": "nll",
                  "value": 2.0 - 0.01 * i, "stderr": 0.1},
                 {"model": m, "task": "heldout_instructions", "language": "en", "metric": "nll",
                  "value": 1.5, "stderr": 0.1},
                 {"model": m, "task": "shipped_mc", "language": "zh", "metric": "acc",
                  "value": 0.60 if m == "DFT-logits" else 0.50, "stderr": 0.02}]
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    for lang, diff, se in (("zh", -0.05, 0.01), ("en", 0.01, 0.02)):
        pd.DataFrame([{"model": m, "diff_vs_TFT": 0.0 if m == "TFT" else diff, "se": 0.0 if m == "TFT" else se,
                       "beyond_2se": m != "TFT" and abs(diff) > 2 * se} for m in models]
                     ).to_csv(out / f"heldout_paired_{lang}.csv", index=False)


def test_before_after_notebook_reads_a_replication(monkeypatch, tmp_path):
    """With runs/replicate present (and no QUICK), the notebook only reads files: no model, no training."""
    monkeypatch.delenv("DFTLENS_NB_QUICK", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fake_replication(tmp_path / "runs" / "replicate")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    nb = execute(NOTEBOOK, cwd=tmp_path, timeout=300)

    assert not outputs(nb, "error")
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "Reading the replication in" in text and "short version into" not in text
    figures = [o["data"][PLOTLY_MIME] for o in outputs(nb) if PLOTLY_MIME in o.get("data", {})]
    loss = next(f for f in figures if f["layout"]["title"]["text"] == "Training loss per component")
    assert {t.get("name") for t in loss["data"]} >= {"TFT", "DFT-logits", "DFT-feature", "ET-only (logits)"}
    html = [o["data"]["text/html"] for o in outputs(nb, "execute_result") if "text/html" in o.get("data", {})]
    diffs = next(h for h in html if "diff_vs_TFT" in h and "beyond_2se" in h)
    # Held-out NLL from the paired files (DFT better in zh, within 2 SE in en); the
    # multiple-choice task unpaired (DFT-logits +0.10, se sqrt(2)*0.02: better).
    assert "paired" in diffs and "unpaired" in diffs
    lines = [ln for ln in text.splitlines() if ln.startswith("  DFT-logits:")]
    assert any("heldout_instructions zh nll -0.0500" in ln and "better than TFT" in ln for ln in lines), lines
    assert any("shipped_mc zh acc +0.1000" in ln and "unpaired" in ln and "better than TFT" in ln for ln in lines)
    assert not any("heldout_instructions en" in ln for ln in lines)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # read only
