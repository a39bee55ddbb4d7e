"""FSDP2 on CPU (gloo): the DFT loss hooks work on a model whose decoder layers are sharded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dft_data import instruction_rows, write_jsonl


# Llama (model.layers), GPT-NeoX (gpt_neox.layers) and BLOOM (transformer.h): the family table's layer paths.
@pytest.mark.parametrize("family", ["llama", "gpt_neox", "bloom"])
def test_dft_losses_on_fsdp2_sharded_layers_equal_the_unsharded_model(family_dir, family, tmp_path):
    pytest.importorskip("torch.distributed.fsdp")
    data = write_jsonl(tmp_path / "p.jsonl", instruction_rows(4))
    worker = Path(__file__).with_name("fsdp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(worker),
                           str(family_dir(family)), str(data)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2
    for row in rows:
        assert row["sharded_grads"] > 0  # the layers' gradients really are sharded DTensors
        assert row["sharded_layers"] == row["n_layers"]  # every decoder layer was sharded
        for key in ("tft", "lc", "et", "loss"):
            assert row["sharded"][key] == pytest.approx(row["reference"][key], rel=1e-5)
        assert row["max_grad_diff"] < 1e-5
