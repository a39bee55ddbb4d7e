"""The contrastive signal (InfoNCE, Liu & Niehues 2025) against independent computations.

Values and gradients against a plain Hugging Face forward (both engines; full weights
and LoRA), and the candidate set: the whole optimizer step (every micro-batch, every
process), so that batch 4 == batch 2 x accumulation 2 == 2 processes x batch 1 x
accumulation 2, in one process (simulated gather) and under torch.distributed (gloo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dft_data import instruction_rows, write_jsonl

from dftlens import load_model
from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import collate
from dftlens.dft.config import TrainConfig
from dftlens.dft.contrastive_signal import info_nce
from dftlens.dft.loss_terms import step_norm
from dftlens.dft.losses import DFTLoss
from dftlens.dft.prepare import load_for_training
from dftlens.dft.session import micro_batch_indices
from dftlens.dft.trainer import train
from dftlens.layers import LayerChoice

pytestmark = pytest.mark.usefixtures("one_thread")
LC, ET, T = 1, 2, 0.5


def reference_info_nce(anchors, candidates, temperature):
    """Row e's positive is candidate e: ``-(cos_ee / T - logsumexp_k cos_ek / T)``, averaged (loops)."""
    total = 0.0
    for e in range(len(anchors)):
        sims = torch.stack([torch.dot(anchors[e], c) / (anchors[e].norm() * c.norm()) for c in candidates])
        total = total - (sims[e] / temperature - torch.logsumexp(sims / temperature, 0))
    return total / len(anchors)


def test_info_nce_matches_the_formula_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(3, 8, generator=g, requires_grad=True)
    candidates = torch.randn(5, 8, generator=g, requires_grad=True)
    got = info_nce(anchors, candidates, torch.tensor([0, 1, 2]), 0.1)
    ref = reference_info_nce(anchors, candidates, 0.1)
    torch.testing.assert_close(got, ref)
    ga = torch.autograd.grad(got, [anchors, candidates])
    gr = torch.autograd.grad(ref, [anchors, candidates])
    for a, b in zip(ga, gr):
        torch.testing.assert_close(a, b)
    # positives elsewhere in the bank (rows 0, 1 are negatives only), summed over a larger denominator
    got = info_nce(anchors, candidates, torch.tensor([2, 3, 4]), 0.1, denominator=6.0)
    full = sum(-(F.cosine_similarity(anchors[e], candidates, dim=-1) / 0.1).log_softmax(0)[p]
               for e, p in enumerate([2, 3, 4])) / 6
    torch.testing.assert_close(got, full)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("contrastive") / "pairs.jsonl", instruction_rows(4))


def pooled_hf(model, seqs, layer, bos, pad, grad):
    """Mean over each row's tokens (BOS excluded) of HF hidden_states[layer + 1] (pre-norm for the last block)."""
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    seen = {}
    norm = model.get_decoder().norm if hasattr(model, "get_decoder") else model.model.norm
    handle = norm.register_forward_hook(lambda m, args, out: seen.setdefault("pre", args[0]))
    with torch.set_grad_enabled(grad):
        try:
            states = list(model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states)
        finally:
            handle.remove()
        states[-1] = seen["pre"]
        h = states[layer + 1]
        return torch.stack([h[b, (1 if s[0] == bos else 0): len(s)].mean(0) for b, s in enumerate(seqs)])


@pytest.mark.parametrize("backend,lora", [("transformer_lens", False), ("nnsight", False), ("transformer_lens", True)])
def test_contrastive_matches_a_plain_hf_computation(backend, lora, tiny_dirs, data_file, tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "x"), model=str(tiny_dirs["llama"]), lc_signal="contrastive",
                      et_signal="contrastive",
                      lc_layer=LC, et_layer=ET, lora=lora, lora_r=4, backend=backend)
    lm = load_for_training(cfg, None, "cpu")[0]
    if lora:  # a non-zero adapter, so that its gradient path is exercised
        with torch.no_grad():
            for name, p in lm.hf_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
    tok = lm.tokenizer
    pairs = encode_pairs(load_instructions(data_file, "zh"), PromptFormat(tok), max_length=256)
    loss = DFTLoss(lm, LayerChoice("tiny", lm.n_layers, LC, ET), lc_signal="contrastive", et_signal="contrastive",
                   temperature=T)
    parts = loss.components(collate(pairs, "contrastive", "contrastive", tok.pad_token_id, tok.bos_token_id))
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    assert not lora or all(p.numel() < 64 * 64 for p in params)  # LoRA: the adapters only
    grads = torch.autograd.grad(parts["lc"] + parts["et"], params, allow_unused=True)
    model, pad, bos = lm.hf_model, tok.pad_token_id, tok.bos_token_id
    tgt = [p.main.ids[: p.main.prefix] for p in pairs]  # causal: the query's states as in the main pass
    en = [p.english.ids for p in pairs]
    lc = reference_info_nce(pooled_hf(model, tgt, LC, bos, pad, True), pooled_hf(model, en, LC, bos, pad, False), T)
    last = lm.n_layers - 1
    et = reference_info_nce(pooled_hf(model, tgt, ET, bos, pad, True), pooled_hf(model, en, last, bos, pad, False), T)
    torch.testing.assert_close(parts["lc"].detach(), lc.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["et"].detach(), et.detach(), rtol=1e-5, atol=1e-6)
    assert float(lc.detach()) > 0.05 and float(et.detach()) > 0.05
    ref_grads = torch.autograd.grad(lc + et, params, allow_unused=True)
    assert sum(g is not None and float(g.abs().sum()) > 0 for g in ref_grads) > 0
    for a, b in zip(grads, ref_grads):
        if b is None:
            assert a is None or float(a.to_dense().abs().max()) == 0
        else:  # the input embedding's gradient is sparse in training (dftlens.dft.prepare)
            torch.testing.assert_close(a.to_dense(), b.to_dense(), rtol=1e-4, atol=1e-6)


def split_step(lm, loss, examples, batch_size, accum, world):
    """Values and averaged gradients of step 0 split as world x accum x batch_size (the trainer's order)."""
    tok = lm.tokenizer
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    per_rank = [[collate([examples[i] for i in micro_batch_indices(len(examples), 0, m * world + r, batch_size)],
                         "contrastive", "off", tok.pad_token_id, tok.bos_token_id) for m in range(accum)]
                for r in range(world)]
    norm = {k: sum(step_norm(mbs, "contrastive", "off")[k] for mbs in per_rank) for k in ("tft", "lc")}
    locals_ = []  # what each process pools: the simulated all-gather concatenates them in rank order
    for mbs in per_rank:
        loss.prepare_step(mbs, gather=lambda rows: (locals_.append(rows) or rows, 0))
    gathered = torch.cat(locals_)
    grads, values = [torch.zeros_like(p) for p in params], {}
    for rank, mbs in enumerate(per_rank):
        n = len(locals_[rank])
        loss.prepare_step(mbs, gather=lambda rows, rank=rank, n=n: (gathered, rank * n))
        lm.hf_model.zero_grad(set_to_none=True)
        for micro, batch in enumerate(mbs):
            for k, v in loss.backward(batch, scale=world, norm=norm, micro=micro).items():
                values[k] = values.get(k, 0.0) + v
        for g, p in zip(grads, params):
            g += p.grad.to_dense() / world
    lm.hf_model.zero_grad(set_to_none=True)
    return values, grads


def test_negatives_are_the_whole_step_under_accumulation_and_processes(tiny_dirs, data_file):
    lm = load_model(str(tiny_dirs["gemma3"]))
    examples = encode_pairs(load_instructions(data_file, "zh"), PromptFormat(lm.tokenizer), max_length=256)
    loss = DFTLoss(lm, LayerChoice("tiny", lm.n_layers, LC, None), lc_signal="contrastive", temperature=T)
    big, big_grads = split_step(lm, loss, examples, 4, 1, 1)
    tok = lm.tokenizer
    whole = collate([examples[i] for i in micro_batch_indices(4, 0, 0, 4)], "contrastive", "off",
                    tok.pad_token_id, tok.bos_token_id)
    assert big["lc"] == pytest.approx(float(loss.components(whole)["lc"].detach()), rel=1e-6)  # in-batch == the step
    for split in ((2, 2, 1), (1, 2, 2), (2, 1, 2)):
        values, grads = split_step(lm, loss, examples, *split)
        for k in ("tft", "lc", "loss"):
            assert values[k] == pytest.approx(big[k], rel=1e-5, abs=1e-6), (split, k)
        for g, ref in zip(grads, big_grads):
            torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)
    # Without the step's bank, micro-batches of 2 see one negative each: a different (larger-batch-free) loss.
    halves = [collate([examples[i] for i in micro_batch_indices(4, 0, m, 2)], "contrastive", "off",
                      tok.pad_token_id, tok.bos_token_id) for m in range(2)]
    loss.bank = None
    in_batch = sum(float(loss.components(b, norm={"lc": 4.0, "tft": 1.0})["lc"].detach()) for b in halves)
    assert abs(in_batch - big["lc"]) > 1e-3


def test_two_processes_train_like_one_big_batch(tiny_dirs, data_file, tmp_path):
    """torch.distributed (gloo): 2 processes x batch 1 x accum 2 log the loss of 1 process x batch 4."""
    args = ["--model", str(tiny_dirs["gemma3"]), "--data", str(data_file), "--lc", "contrastive", "--et", "off",
            "--lc-layer", "1", "--steps", "2", "--batch-size", "1", "--grad-accum", "2", "--lr", "1e-3",
            "--temperature", str(T), "--no-progress"]
    dftlens = str(Path(sys.executable).parent / "dftlens")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--no-python", dftlens]
    proc = subprocess.run(launch + ["train", *args, "--out", str(tmp_path / "ddp")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    train(TrainConfig(out=str(tmp_path / "one"), model=str(tiny_dirs["gemma3"]), data=str(data_file),
                      lc_signal="contrastive", et_signal="off", lc_layer=1, steps=2, batch_size=4, lr=1e-3, temperature=T),
          progress=False)
    read = [[json.loads(x) for x in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("ddp", "one")]
    assert len(read[0]) == len(read[1]) == 2
    for a, b in zip(*read):
        for key in ("loss", "tft", "lc", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
