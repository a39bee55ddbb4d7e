"""Accumulation equals the big batch: batch 4 == batch 2 x accum 2 == 2 processes x batch 1 x accum 2.

Each split computes the loss and the gradients of the same four examples, as the
trainer does (every mean normalised by the whole step, :func:`step_norm`; each
process's gradient scaled by the world size, then averaged over processes as the
data-parallel all-reduce does). Float32, tolerance 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from dft_data import instruction_rows, write_jsonl

from dftlens import load_model
from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import collate
from dftlens.dft.loss_terms import step_norm
from dftlens.dft.losses import DFTLoss
from dftlens.layers import LayerChoice
from dftlens.dft.prepare import densify_grads, sparse_embedding_grads
from dftlens.dft.session import micro_batch_indices

pytestmark = pytest.mark.usefixtures("one_thread")


def step(lm, loss_fn, examples, lc, et, batch_size, accum, world):
    """Loss components and the averaged gradient of step 0 split as (world x accum x batch_size)."""
    tok = lm.tokenizer
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    per_rank = []
    for rank in range(world):
        per_rank.append([
            collate([examples[i] for i in micro_batch_indices(len(examples), 0, micro * world + rank, batch_size)],
                    lc, et, tok.pad_token_id, tok.bos_token_id)
            for micro in range(accum)])
    # step_norm's reduce_sum: what the all-reduce of the units over processes returns
    totals = [step_norm(mbs, lc, et) for mbs in per_rank]
    norm = {k: sum(t[k] for t in totals) for k in totals[0]}
    grads, values = [torch.zeros_like(p) for p in params], {}
    for micro_batches in per_rank:
        lm.hf_model.zero_grad(set_to_none=True)
        for batch in micro_batches:
            for k, v in loss_fn.backward(batch, scale=world, norm=norm).items():
                values[k] = values.get(k, 0.0) + v
        densify_grads(params)
        for g, p in zip(grads, params):
            g += p.grad / world  # the data-parallel mean over processes
    lm.hf_model.zero_grad(set_to_none=True)
    return values, grads


@pytest.mark.parametrize("family,lc,et", [("llama", "feature", "logits"), ("gemma3", "logits", "feature")])
def test_accumulation_and_processes_equal_the_big_batch(family, lc, et, tiny_dirs, tmp_path):
    lm = load_model(str(tiny_dirs[family]))
    sparse_embedding_grads(lm.hf_model)
    data = load_instructions(write_jsonl(tmp_path / "p.jsonl", instruction_rows(4)), "zh")
    examples = encode_pairs(data, PromptFormat(lm.tokenizer), max_length=256)
    # The examples differ in length, so a per-micro-batch mean would weigh tokens unequally.
    assert len({len(e.main.continuation) for e in examples}) > 1
    loss_fn = DFTLoss(lm, LayerChoice("tiny", lm.n_layers, 1, 2), lc_signal=lc, et_signal=et)
    big_values, big_grads = step(lm, loss_fn, examples, lc, et, batch_size=4, accum=1, world=1)
    # batch 4 is one micro-batch: its components are the plain means of DFTLoss.components
    ref = loss_fn.components(collate([examples[i] for i in micro_batch_indices(4, 0, 0, 4)], lc, et,
                                     lm.tokenizer.pad_token_id, lm.tokenizer.bos_token_id))
    for k in ("tft", "lc", "et", "loss"):
        assert big_values[k] == pytest.approx(float(ref[k].detach()), rel=1e-6)
    for split in ((2, 2, 1), (1, 2, 2), (1, 4, 1), (2, 1, 2)):
        values, grads = step(lm, loss_fn, examples, lc, et, *split)
        for k in ("tft", "lc", "et", "loss"):  # the loss components (not diagnostics such as gradient norms)
            assert values[k] == pytest.approx(big_values[k], rel=1e-5, abs=1e-6), (split, k)
        for g, ref_g in zip(grads, big_grads):
            torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-6)
    # The old per-micro-batch mean (batch 2, each micro-batch averaging its own tokens) differs.
    old = 0.0
    for micro in range(2):
        batch = collate([examples[i] for i in micro_batch_indices(4, 0, micro, 2)], lc, et,
                        lm.tokenizer.pad_token_id, lm.tokenizer.bos_token_id)
        old += float(loss_fn.components(batch)["tft"].detach()) / 2
    assert abs(old - big_values["tft"]) > 1e-4


def test_trainer_logs_the_same_step_for_every_split(tiny_dirs, tmp_path):
    """The trainer's log: batch 4 == batch 2 x accum 2 == batch 1 x accum 4 (losses, gradient norms)."""
    import json

    from dftlens.dft.config import TrainConfig
    from dftlens.dft.trainer import train

    data = str(write_jsonl(tmp_path / "p.jsonl", instruction_rows(4)))
    logs = []
    for batch, accum in ((4, 1), (2, 2), (1, 4)):
        out = tmp_path / f"b{batch}a{accum}"
        train(TrainConfig(out=str(out), model=str(tiny_dirs["llama"]), data=data, lc_signal="feature", et_signal="feature",
                          lc_layer=1, et_layer=2, steps=1, batch_size=batch, grad_accum=accum, lr=1e-3),
              progress=False)
        logs.append(json.loads((out / "log.jsonl").read_text().splitlines()[0]))
    keys = ("loss", "tft", "lc", "et", "grad_norm", "lc_gnorm", "et_gnorm")
    assert all(k in logs[0] for k in keys)
    for log in logs[1:]:
        for k in keys:
            assert log[k] == pytest.approx(logs[0][k], rel=1e-4), k
