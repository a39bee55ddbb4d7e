"""Cost of the DFT losses, as ratios to plain target-language fine-tuning (TFT).

On the embedded model (Gemma-3-270M, float32 on CPU; full fine-tuning, or LoRA
with ``--lora``), loaded exactly as ``dftlens train`` loads it, the same
micro-batches of the bundled zh instruction data run one training step each
(losses + backward + clipping + AdamW) in three modes:

- TFT: L_TFT only;
- DFT-feature: LC feature + ET feature (English pass without gradients);
- DFT-logits: LC logits + ET logits (passes stop at layer i / j, frozen head);
- DFT-contrastive: LC contrastive + ET contrastive (InfoNCE over the step's examples: the
  step's English pass without gradients pools the candidates, as the trainer's ``prepare_step``).

The modes run interleaved (TFT, feature, logits, TFT, ...), several repeats, and
medians are compared. Time and memory are measured in separate rounds, so the
memory sampler does not slow the timed steps.

Memory on CPU: peak resident set size (psutil RSS, sampled every 2 ms in a
thread) during the step minus the RSS just before it (weights and AdamW state
are already allocated; gradients are freed between steps, so they count). The
memory round runs in a child process with ``MALLOC_MMAP_THRESHOLD_=65536`` so
that glibc returns freed tensors to the system at once and RSS follows live
memory; the timing round runs in another child with the ordinary allocator. On
a GPU the memory is ``torch.cuda.max_memory_allocated`` above the pre-step value.

Both kinds of training run (full fine-tuning, then LoRA) unless ``--lora`` or
``--full`` picks one; the last line reads
``RATIOS full_ft feature=<x> logits=<x> contrastive=<x> memory=<x> lora ...``
(time ratios to TFT; memory: the largest of the DFT modes' ratios), after a
``FLOOR`` line: what any exact DFT-logits step must cost at least, TFT plus the
frozen-head cross-entropy (forward and gradient) of the LC and ET loss tokens
alone, timed in the same rounds. With a 262k-token vocabulary that head dominates.
``--parallel`` runs the four rounds as concurrent processes: each round still
interleaves its modes, so a shared load slows them alike, and each memory round
measures its own process's RSS.

Usage: python benchmarks/train_speed.py [--repeats 5] [--batch 4] [--lc-layer 5] [--et-layer 12] [--threads 1] [--lora|--full]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch

from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import IGNORE, collate
from dftlens.dft.chunked_ce import linear_cross_entropy
from dftlens.dft.losses import DFTLoss
from dftlens.layers import LayerChoice
from dftlens.dft.config import TrainConfig
from dftlens.dft.prepare import densify_grads, load_for_training
from dftlens.dft.session import make_optimizer

from timing import load_report, machine_load

MODES = {"TFT": ("off", "off"), "DFT-feature": ("feature", "feature"), "DFT-logits": ("logits", "logits"),
         "DFT-contrastive": ("contrastive", "contrastive")}


class PeakRSS:
    """Peak RSS above the starting value while the block runs (sampled every ~2 ms)."""

    def __init__(self):
        self.proc = psutil.Process()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.delta = self.peak - self.start


def measure(args) -> dict:
    """One round (``args.phase`` time or memory) in this process; medians per mode."""
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    setup = TrainConfig(model="gemma3-270m", lora=args.lora, lc_signal="off", et_signal="off")
    lm = load_for_training(setup, None, device)[0]  # exactly as the trainer loads it
    lm.hf_model.train()
    tok = lm.tokenizer
    pairs = encode_pairs(load_instructions(None, args.lang), PromptFormat(tok), max_length=512)
    groups = [pairs[k * args.batch : (k + 1) * args.batch] for k in range(args.batches)]
    batches = {mode: [collate(g, lc, et, tok.pad_token_id, tok.bos_token_id).to(lm.device) for g in groups]
               for mode, (lc, et) in MODES.items()}
    params = [p for p in lm.hf_model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, lr=0.0)  # lr 0: every step sees the same weights
    choice = LayerChoice(lm.name, lm.n_layers, args.lc_layer, args.et_layer)
    losses = {mode: DFTLoss(lm, choice, lc_signal=lc, et_signal=et) for mode, (lc, et) in MODES.items()}
    cuda = lm.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else None  # as the trainer

    def step(mode: str, k: int) -> None:
        batch = batches[mode][k % args.batches]
        if losses[mode].contrastive:  # as the trainer: the step's candidates first (one micro-batch here)
            losses[mode].prepare_step([batch])
        losses[mode].backward(batch, autocast=autocast, micro=0)
        densify_grads(params)  # as the trainer does (sparse embedding lookups)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def timed(mode: str, k: int) -> float:
        sync()
        start = time.perf_counter()
        step(mode, k)
        sync()
        return time.perf_counter() - start

    def peak(mode: str, k: int) -> float:
        if cuda:
            sync()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step(mode, k)
            sync()
            return torch.cuda.max_memory_allocated() - base
        with PeakRSS() as rss:
            step(mode, k)
        return rss.delta

    weight = lm.head_params(True)[0]  # the frozen unembedding the logits losses decode with

    def lens_ce(k: int) -> None:
        """The floor of DFT-logits over TFT: the frozen-head cross-entropy of its LC and ET loss tokens.

        Forward and gradient with respect to the states, on as many rows as the two
        passes score (random states: the cost does not depend on the values).
        """
        batch = batches["DFT-logits"][k % args.batches]
        for packed in (batch.lc_logits, batch.et_logits):
            hidden = torch.randn(packed.n_targets, weight.shape[1], device=lm.device, requires_grad=True)
            targets = packed.targets[packed.targets != IGNORE]
            linear_cross_entropy(hidden, weight, targets, softcap=lm.arch.softcap).backward()

    def floor_step(k: int) -> float:
        sync()
        start = time.perf_counter()
        lens_ce(k)
        sync()
        return time.perf_counter() - start

    for mode in MODES:  # warm-up: allocates the AdamW state, first-call overheads
        step(mode, 0)
    samples = {m: [] for m in MODES}
    order = list(MODES)
    floor = []
    for r in range(args.repeats):
        for mode in order[r % len(order) :] + order[: r % len(order)]:  # interleaved; who goes first rotates
            samples[mode].append((timed if args.phase == "time" else peak)(mode, r))
        if args.phase == "time":
            floor.append(floor_step(r))
    tokens = sum(int(b.main.attention_mask.sum()) for b in batches["TFT"]) / args.batches
    return {"device": str(lm.device), "threads": torch.get_num_threads(), "tokens": tokens,
            "medians": {m: statistics.median(v) for m, v in samples.items()}, "samples": samples,
            "lens_ce": statistics.median(floor) if floor else None}


def start_child(args, phase: str, lora: bool) -> subprocess.Popen:
    env = dict(os.environ)
    if phase == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    skip = ("phase", "lora", "full", "parallel", "rounds_dir")
    argv = [sys.executable, __file__, "--phase", phase] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in skip] + (["--lora"] if lora else [])
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"a measuring child failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def report(args, lora: bool, timing: dict, memory: dict) -> tuple[float, float, float]:
    """Print one kind of training's table; return (feature x, logits x, memory x)."""
    cuda = timing["device"].startswith("cuda")
    kind = "LoRA" if lora else "full fine-tuning"
    print(f"Gemma-3-270M {kind} on {timing['device']}, torch threads {timing['threads']}, "
          f"{args.batches} micro-batches of {args.batch} ({timing['tokens']:.0f} tokens per main pass), "
          f"LC layer {args.lc_layer}, ET layer {args.et_layer}, {args.repeats} interleaved repeats")
    what = "peak CUDA alloc MiB" if cuda else "peak RSS delta MiB"
    print(f"{'mode':<12} {'median s':>9} {'time x':>7} {what:>20} {'memory x':>9}")
    t0, m0 = timing["medians"]["TFT"], memory["medians"]["TFT"]
    for mode in MODES:
        t, m = timing["medians"][mode], memory["medians"][mode]
        print(f"{mode:<12} {t:>9.3f} {t / t0:>7.2f} {m / 2**20:>20.0f} {m / m0:>9.2f}")
    samples = timing["samples"].items()
    print("time samples (s): " + "; ".join(f"{m} " + " ".join(f"{x:.2f}" for x in v) for m, v in samples))
    mem = max(memory["medians"][m] / m0 for m in ("DFT-feature", "DFT-logits", "DFT-contrastive"))
    floor = (t0 + timing["lens_ce"]) / t0
    print(f"floor of DFT-logits: TFT + the frozen-head cross-entropy of its LC and ET loss tokens alone "
          f"({timing['lens_ce']:.3f} s) = {floor:.2f}x TFT")
    return (timing["medians"]["DFT-feature"] / t0, timing["medians"]["DFT-logits"] / t0, mem, floor,
            timing["medians"]["DFT-contrastive"] / t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=3, help="distinct micro-batches, cycled")
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--lc-layer", type=int, default=5)
    parser.add_argument("--et-layer", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lora", action="store_true", help="only LoRA (r 16, all projections)")
    parser.add_argument("--full", action="store_true", help="only full fine-tuning")
    parser.add_argument("--parallel", action="store_true",
                        help="run the four rounds (time/memory x full/LoRA) as concurrent processes")
    parser.add_argument("--rounds-dir", default=None,
                        help="keep each round's medians here as <kind>_<phase>.json and reuse the ones already there")
    parser.add_argument("--phase", choices=["time", "memory"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(measure(args)))
        return
    kinds = [k for k, on in (("full_ft", not args.lora), ("lora", not args.full)) if on]
    rounds = [(kind, phase) for kind in kinds for phase in ("time", "memory")]
    measured = {}
    saved = Path(args.rounds_dir) if args.rounds_dir else None
    if saved is not None:
        saved.mkdir(parents=True, exist_ok=True)
        for r in rounds:
            if (saved / f"{r[0]}_{r[1]}.json").exists():
                measured[r] = json.loads((saved / f"{r[0]}_{r[1]}.json").read_text())
    todo = [r for r in rounds if r not in measured]
    machine_load()  # the children time; the parent reads the load around them

    def keep(r, value):
        measured[r] = value
        if saved is not None:
            (saved / f"{r[0]}_{r[1]}.json").write_text(json.dumps(value))

    if args.parallel:
        procs = {r: start_child(args, r[1], r[0] == "lora") for r in todo}
        for r, p in procs.items():
            keep(r, result(p))
    else:
        for r in todo:
            keep(r, result(start_child(args, r[1], r[0] == "lora")))
    machine_load()
    ratios = {}
    for kind in kinds:
        ratios[kind] = report(args, kind == "lora", measured[(kind, "time")], measured[(kind, "memory")])
        print()
    print("targets: DFT-feature and DFT-contrastive <= 1.3x time; DFT-logits <= 1.6x (LoRA), <= 1.4x (full) time; memory <= 1.2x "
          "(memory: the larger of the two DFT modes)")
    print("FLOOR " + " ".join(f"{k} logits>={r[3]:.2f}" for k, r in ratios.items()))
    print("RATIOS " + " ".join(f"{k} feature={f:.2f} logits={l:.2f} contrastive={c:.2f} memory={m:.2f}"
                               for k, (f, l, m, _, c) in ratios.items()))
    print(load_report()[0])


if __name__ == "__main__":
    main()
