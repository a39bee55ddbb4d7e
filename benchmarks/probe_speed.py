"""The probe's forward-plus-lens pass over a bare forward pass, next to its roofline floor.

On the embedded model, the same translation prompts: (a) a bare forward with
``logits_to_keep=1``; (b) what `dftlens probe` does per batch: capture resid_post
at the last real token of every layer and decode it through the logit lens
(:meth:`LensModel.lens_reduce`: one pass over the vocabulary, the head read once per
batch), reduced to P(en), P(target), entropy and top-k.

The floor is a roofline (Williams, Waterman and Patterson 2009): each pass needs at
least max(FLOPs / peak FLOP rate, bytes / memory bandwidth) seconds, both rates
MEASURED in the same run (a float32 1024^3 matmul; a 256 MiB copy; bf16 on the GPU).
FLOPs: 2 x (non-embedding parameters) per token, attention scores, and the head
(2 d V) once per prompt for the bare pass, once per layer and prompt for the probe.
Bytes: every weight read once (the head included, once per batch: the fused lens
needs no more), plus each block's residual stream in and out. The script prints both
floors of each pass, which one binds, the floor ratio max(...)_probe / max(...)_bare,
and measured ratio / floor ratio (target <= 1.2). ``--profile``: the top entries of a
``torch.profiler`` table of one probe pass. The machine's load is printed and a run
taken under load is flagged (``timing.py``).

``--shape 7b`` (GPU only): the same on a random-weight Llama-2-7B-shaped
model (32 layers, d_model 4096, vocabulary 32000) in bfloat16 on CUDA, with the
offline BPE tokenizer of the tests, padded to 32000 tokens (the weights are
random, so only the timing means anything). Refuses with exit code 2 without CUDA.
Usage: python benchmarks/probe_speed.py [--repeats 7] [--batch 16] [--shape embedded|7b] [--profile]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from dftlens import load_model
from dftlens.analysis.lens import measure
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items

from timing import interleaved_medians, print_ratios


def pass_costs(lm, batch: int, seq_len: int) -> dict[str, tuple[float, float]]:
    """FLOPs and bytes of the bare and the probe pass over ``batch`` prompts of ``seq_len`` tokens."""
    cfg = lm.config
    params = list(lm.hf_model.parameters())
    size = params[0].element_size()
    n_params = sum(p.numel() for p in params)
    embed = lm.hf_model.get_input_embeddings().weight.numel()
    body = 2 * (n_params - embed) * seq_len
    attn = 4 * lm.n_layers * seq_len**2 * cfg.num_attention_heads * cfg.head_dim
    head = 2 * lm.d_model * lm.vocab_size
    weights = n_params * size  # tied or not, every matrix is read once per pass
    stream = 2 * lm.n_layers * batch * seq_len * lm.d_model * size  # each block's residual in and out
    return {"bare": (batch * (body + attn + head), weights + stream),
            "probe": (batch * (body + attn + lm.n_layers * head),
                      weights + stream + lm.n_layers * batch * lm.d_model * 4)}  # + the lens's float32 rows


def machine_rates(device: torch.device, dtype: torch.dtype) -> tuple[float, float]:
    """(peak FLOP/s of a 1024^3 matmul, bytes/s of a 256 MiB copy), best of 5, measured now."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a = torch.randn(1024, 1024, device=device, dtype=dtype)
    src = torch.empty(2**28 // 4, device=device, dtype=torch.float32).normal_()
    dst = torch.empty_like(src)

    def best(fn, reps=5):
        times = []
        for _ in range(reps + 1):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return min(times[1:])

    flops = 2 * 1024**3 / best(lambda: a @ a)
    bandwidth = 2 * src.numel() * 4 / best(lambda: dst.copy_(src))
    return flops, bandwidth


def print_floors(costs, flops_rate: float, bandwidth: float, ratio: float) -> None:
    """The roofline floors of both passes, which binds, and measured ratio / floor ratio."""
    print(f"measured now: matmul {flops_rate / 1e9:.1f} GFLOP/s, memory {bandwidth / 1e9:.1f} GB/s")
    floors = {}
    for name, (flops, nbytes) in costs.items():
        t_flop, t_mem = flops / flops_rate, nbytes / bandwidth
        floors[name] = max(t_flop, t_mem)
        binds = "FLOPs" if t_flop >= t_mem else "memory"
        print(f"{name} pass: {flops / 1e9:.1f} GFLOP -> {t_flop:.3f} s; {nbytes / 1e9:.2f} GB -> {t_mem:.3f} s; "
              f"{binds} bind")
    flop_ratio = costs["probe"][0] / costs["bare"][0]
    mem_ratio = costs["probe"][1] / costs["bare"][1]
    floor = floors["probe"] / floors["bare"]
    print(f"floor ratios: FLOPs {flop_ratio:.3f}, memory {mem_ratio:.3f}; binding floor {floor:.3f}; "
          f"measured {ratio:.3f}; measured / floor = {ratio / floor:.3f} (target <= 1.2)")


def print_profile(run, device: torch.device, rows: int = 12) -> None:
    """A torch.profiler table of one call of ``run``, sorted by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shape", choices=("embedded", "7b"), default="embedded")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of one probe pass")
    parser.add_argument("--ab", action="store_true",
                        help="also time the lens decode alone on the batch's captured residuals: the kernel "
                             "(lens_reduce) against the full-row path it replaced, interleaved")
    args = parser.parse_args()

    if args.shape == "7b":
        if not torch.cuda.is_available():
            print("error: --shape 7b needs a CUDA GPU (a 7B model in bfloat16 takes 13.5 GB); none is available "
                  "here.", file=sys.stderr)
            sys.exit(2)
        lm = seven_b_shaped()
    else:
        lm = load_model("gemma3-270m")
    items = translation_items(load_words(languages=["en", "fr", "zh"]), "fr", "zh")[: args.batch]
    token_sets = TokenSets(lm.tokenizer)
    for it in items:  # build token sets once, as a probe run does before its loop
        token_sets.ids(it.answer), token_sets.ids(it.answer_en)
    batch = lm.tokenize([it.prompt for it in items])
    seq_len = int(batch["attention_mask"].sum(1).float().mean())

    sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)
    probe = "probe pass (capture + lens + reductions)"
    bare = "bare forward (logits_to_keep=1)"

    def probe_pass():
        measure(lm, items, token_sets, batch_size=len(items), progress=False)
        sync()

    with torch.no_grad():
        medians = interleaved_medians({
            bare: lambda: (lm.forward_logits(batch, logits_to_keep=1), sync()),
            probe: probe_pass,
        }, repeats=args.repeats)
        rates = machine_rates(lm.device, lm.dtype)
        if args.profile:
            print_profile(probe_pass, lm.device)
    print(f"{lm.name}: {lm.dtype} on {lm.device}; batch {len(items)} prompts, mean {seq_len} tokens, "
          f"{lm.n_layers} layers, vocab {lm.vocab_size}; torch threads {torch.get_num_threads()}")
    print_ratios(medians, bare)
    print_floors(pass_costs(lm, len(items), seq_len), *rates, medians[probe] / medians[bare])
    if args.ab:
        decode_ab(lm, items, token_sets, batch, args.repeats, sync)


def full_row_decode(lm, resid, ids, weights, top_k: int = 10):
    """The decode the probe ran before the lens kernel: full float32 log-softmax rows, chunks of
    8 layers (its former 512 MiB CPU budget at batch 16), then exp, entropy, set masses, top-k."""
    n = resid.shape[1]
    for first in range(0, resid.shape[0], 8):
        logp = lm.log_probs(resid[first:first + 8].reshape(-1, resid.shape[-1]))
        probs = logp.exp()
        entropy = -(logp.exp() * logp).nan_to_num(nan=0.0, neginf=0.0).sum(-1) / math.log(2)
        k = logp.shape[0] // n
        sets = ids.repeat(k, 1, 1).reshape(logp.shape[0], -1)
        masses = (probs.gather(1, sets) * weights.repeat(k, 1, 1).reshape(logp.shape[0], -1)).sum(-1)
        top = logp.topk(top_k, dim=-1).indices
    return entropy, masses, top


def decode_ab(lm, items, token_sets, batch, repeats: int, sync) -> None:
    """Median seconds of the lens decode alone (same captured residuals): kernel vs full rows."""
    from dftlens.analysis.lens_rows import item_set_tensors

    names = lm.hook_names()
    with torch.no_grad():
        resid = lm.capture(batch, names, positions="last").stack(names)  # [layers, batch, d]
        ids, weights = item_set_tensors(token_sets, items)
        rows = resid.reshape(-1, resid.shape[-1])
        kernel, full = "lens decode: kernel (lens_reduce)", "lens decode: full rows (before)"
        medians = interleaved_medians({
            kernel: lambda: (lm.lens_reduce(rows, ids.repeat(lm.n_layers, 1, 1), weights.repeat(lm.n_layers, 1, 1),
                                            10), sync()),
            full: lambda: (full_row_decode(lm, resid, ids, weights), sync()),
        }, repeats=repeats)
    print_ratios(medians, kernel)


def seven_b_shaped():
    """A random-weight Llama-2-7B-shaped LensModel in bfloat16 on CUDA (TransformerLens engine)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import make_tokenizer

    from dftlens.models import LensModel, make_engine

    directory = Path(tempfile.mkdtemp(prefix="llama7b_shape_"))
    tokenizer = make_tokenizer()
    # Pad the vocabulary to the 7B shape's 32000 so every id the random head ranks has a token.
    tokenizer.add_tokens([f"<unused{i}>" for i in range(32000 - len(tokenizer))], special_tokens=True)
    tokenizer.save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, architectures=["LlamaForCausalLM"])
    config.save_pretrained(directory)
    config = LlamaConfig.from_pretrained(directory)  # carries its directory, as TransformerLens expects
    with torch.device("cuda"):
        hf_model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    engine = make_engine("transformer_lens", hf_model, tokenizer, "llama2-7b-shape", str(directory))
    return LensModel(hf_model, tokenizer, engine, name="llama2-7b-shape (random, bf16)", path=str(directory))


if __name__ == "__main__":
    main()
