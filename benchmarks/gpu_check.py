"""DFT at the paper's scale on one GPU: tokens/s and peak memory of TFT, DFT-feature, DFT-logits.

Builds a LLaMA-2-7B-shaped model (32 layers, d=4096, 32 heads, MLP 11008, vocab
32000) with random weights (no download), on CUDA, and times one full training
step (losses + backward + clipping + AdamW, as ``dftlens train`` runs it: the
same DFTLoss, bf16 autocast over the weights) at batch 4 x 512 tokens in three
modes, interleaved, medians over ``--repeats``:

- TFT: L_TFT only;
- DFT-feature: LC feature (layer 2) + ET feature (layer 15), the paper's layers;
- DFT-logits: LC logits + ET logits at the same layers.

``--setup lora``: base weights in bf16, frozen; LoRA r=16 on all linear layers in
float32. ``--setup full``: every weight trains, bf16 weights and AdamW state (the
trainer's default float32 master weights need 4 x 27 GB for 7B before
activations); skipped with a message where it does not fit. Default: both. Peak
memory is ``torch.cuda.max_memory_allocated`` during the step above what was
allocated before it; ratios are to TFT. ``--smoke-cpu`` runs a tiny model of the
same family on the CPU to check the script (its numbers mean nothing).
``--cpu-width 512`` runs LLaMA-2's shape (32 layers, vocab 32000, MLP 2.69 x d)
at width 512 on the CPU in float32: time ratios where the LM head is a small share
of a step, as at 7B (no memory counter on the CPU: memory ratios read 1.00).

Without CUDA it says so and exits with status 2.

Usage: python benchmarks/gpu_check.py [--setup lora|full|both] [--repeats 5] [--batch 4] [--seq 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from timing import load_report, machine_load

MODES = {"TFT": ("off", "off"), "DFT-feature": ("feature", "feature"), "DFT-logits": ("logits", "logits")}


def llama2_7b_config(layers: int, smoke: bool = False, width: int = 0):
    from transformers import LlamaConfig

    if width:  # LLaMA-2's depth, vocabulary and MLP ratio at a CPU-sized width (--cpu-width)
        return LlamaConfig(vocab_size=32000, hidden_size=width, intermediate_size=width * 11008 // 4096,
                           num_hidden_layers=layers, num_attention_heads=max(1, width // 128),
                           num_key_value_heads=max(1, width // 128), max_position_embeddings=4096, rms_norm_eps=1e-5,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["LlamaForCausalLM"],
                           tie_word_embeddings=False)
    if smoke:  # a tiny model of the same family, to check the script itself on a CPU
        return LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0, architectures=["LlamaForCausalLM"],
                           tie_word_embeddings=False)
    return LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                       architectures=["LlamaForCausalLM"], tie_word_embeddings=False)


def tokenizer_dir(tmp):
    """A byte-level stand-in tokenizer (only the engine needs one; batches are random ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(0x100 + i): 3 + i for i in range(256)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>")
    fast.save_pretrained(tmp)


def random_batch(batch: int, seq: int, lc: str, et: str, vocab: int, prefix: int):
    """Random ids in the layout of a DFT batch: prefix tokens then a continuation on every pass.

    The LC/ET logits rows start with their main row's ``prefix`` tokens (the target
    query they share, which the DFT losses reuse), then ``seq - prefix`` tokens of their own.
    """
    from dftlens.data.instructions import Segmented
    from dftlens.dft.batches import Batch, pack

    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    main_rows = [Segmented([1] + ids(seq - 1), prefix, prefix) for _ in range(batch)]

    def sharing():
        return [Segmented(r.ids[:prefix] + ids(seq - prefix), prefix, prefix) for r in main_rows]

    main = pack(main_rows, 0, 1)
    english = pack([Segmented([1] + ids(prefix - 1), prefix, 0) for _ in range(batch)], 0, 1) if "feature" in (lc, et) else None
    lc_p = pack(sharing(), 0, 1) if lc == "logits" else None
    et_p = pack(sharing(), 0, 1) if et == "logits" else None
    return Batch(main, english, lc_p, et_p)


def run(setup: str, args) -> dict | None:
    import tempfile

    from transformers import AutoModelForCausalLM

    from dftlens.dft.loss_terms import step_norm
    from dftlens.dft.losses import DFTLoss
    from dftlens.layers import LayerChoice
    from dftlens.dft.prepare import densify_grads, sparse_embedding_grads
    from dftlens.dft.session import make_optimizer
    from dftlens.models.engines import make_engine
    from dftlens.models.interface import LensModel

    device = "cpu" if args.smoke_cpu or args.cpu_width else "cuda"
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tmp = tempfile.mkdtemp()
    tokenizer_dir(tmp)
    config = llama2_7b_config(args.layers, smoke=args.smoke_cpu, width=args.cpu_width)
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    allocated = torch.cuda.memory_allocated if cuda else (lambda: 0)
    peak = torch.cuda.max_memory_allocated if cuda else (lambda: 0)
    reset = torch.cuda.reset_peak_memory_stats if cuda else (lambda: None)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        config.save_pretrained(tmp)
        if setup == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            model.requires_grad_(False)
            lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                   "up_proj", "down_proj"], task_type="CAUSAL_LM")
            model = inject_adapter_in_model(lora, model)
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.data = p.data.float()  # float32 adapter weights, as the trainer keeps them
        if args.gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        sparse_embedding_grads(model)
        model.train()
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tmp)
        lm = LensModel(model, tok, make_engine("transformer_lens", model, tok, "llama2-7b-shaped", tmp),
                       name="llama2-7b-shaped", path=tmp)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, lr=0.0)
        choice = LayerChoice(lm.name, lm.n_layers, args.lc_layer, args.et_layer)
        losses = {m: DFTLoss(lm, choice, lc_signal=lc, et_signal=et) for m, (lc, et) in MODES.items()}
        batches = {m: random_batch(args.batch, args.seq, lc, et, config.vocab_size, args.prefix).to(device)
                   for m, (lc, et) in MODES.items()}
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else None  # as the trainer

        def step(mode):
            batch = batches[mode]
            lc, et = MODES[mode]
            losses[mode].backward(batch, autocast=autocast, norm=step_norm([batch], lc, et))
            densify_grads(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for mode in MODES:  # warm-up, AdamW state
            step(mode)
        times, peaks = {m: [] for m in MODES}, {m: [] for m in MODES}
        order = list(MODES)
        for r in range(args.repeats):
            for mode in order[r % 3:] + order[: r % 3]:
                sync()
                base = allocated()
                reset()
                start = time.perf_counter()
                step(mode)
                sync()
                times[mode].append(time.perf_counter() - start)
                peaks[mode].append(peak() - base)
        resident = allocated()
    except torch.OutOfMemoryError:
        print(f"{setup}: out of GPU memory at batch {args.batch} x {args.seq}; skipped.", flush=True)
        return None
    finally:
        if cuda:
            torch.cuda.empty_cache()
    tokens = args.batch * args.seq
    med = {m: statistics.median(times[m]) for m in MODES}
    mem = {m: max(statistics.median(peaks[m]), 1) for m in MODES}  # 1: no memory counter on the CPU smoke run
    print(f"\n{setup} ({args.layers} layers, batch {args.batch} x {args.seq}, resident {resident / 2**30:.1f} GiB)")
    print(f"{'mode':<12} {'s/step':>8} {'tokens/s':>9} {'peak GiB':>9} {'time x':>7} {'mem x':>6}")
    for m in MODES:
        print(f"{m:<12} {med[m]:>8.3f} {tokens / med[m]:>9.0f} {mem[m] / 2**30:>9.2f} "
              f"{med[m] / med['TFT']:>7.2f} {mem[m] / mem['TFT']:>6.2f}")
    return {"time": {m: med[m] / med["TFT"] for m in MODES}, "memory": {m: mem[m] / mem["TFT"] for m in MODES}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", choices=("lora", "full", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--prefix", type=int, default=128, help="prompt tokens per sequence")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--lc-layer", type=int, default=2)
    parser.add_argument("--et-layer", type=int, default=15)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--smoke-cpu", action="store_true", help="tiny model on the CPU: checks the script, measures nothing")
    parser.add_argument("--cpu-width", type=int, default=0,
                        help="on the CPU (float32): LLaMA-2's 32 layers, vocabulary and MLP ratio at this width "
                             "(e.g. 512), so that the LM head is as small a share of a step as at 7B's scale")
    args = parser.parse_args()
    if args.cpu_width:
        print(f"CPU, LLaMA-2 shape at width {args.cpu_width}, torch threads {torch.get_num_threads()}")
    elif args.smoke_cpu:
        args.layers, args.lc_layer, args.et_layer = min(args.layers, 4), 1, 2
    elif not torch.cuda.is_available():
        print("gpu_check.py needs a CUDA GPU (none found); nothing measured.", file=sys.stderr)
        return 2
    if not args.cpu_width:
        print(f"GPU: {torch.cuda.get_device_name() if not args.smoke_cpu else 'none (CPU smoke run)'}, torch {torch.__version__}")
    results = {}
    machine_load()
    for setup in (("lora", "full") if args.setup == "both" else (args.setup,)):
        results[setup] = run(setup, args)
    machine_load()
    parts = []
    for setup, res in results.items():
        if res:
            parts.append(f"{setup} feature={res['time']['DFT-feature']:.2f} logits={res['time']['DFT-logits']:.2f} "
                         f"memory={max(res['memory']['DFT-feature'], res['memory']['DFT-logits']):.2f}")
    print(("CPU_RATIOS " if args.cpu_width else "GPU_RATIOS ") + " ".join(parts))
    print(load_report()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
