"""The probe's forward-plus-lens pass over a bare forward pass, next to its floor.

On the embedded model, the same translation prompts: (a) a bare forward with
``logits_to_keep=1``; (b) what `dftlens probe` does per batch: capture resid_post
at the last real token of every layer and decode it through the logit lens
(log-softmax over the full vocabulary, one position per layer), then reduce to
P(en), P(target), entropy and top-k. The arithmetic floor is the FLOP ratio
(body + L x head) / (body + 1 x head): the lens decodes L positions where the bare
pass decodes one. Target: measured ratio within 1.2x of the floor.

``--shape 7b`` (GPU only): the same ratio on a random-weight Llama-2-7B-shaped
model (32 layers, d_model 4096, vocabulary 32000) in bfloat16 on CUDA, with the
offline BPE tokenizer of the tests, padded to 32000 tokens (the weights are
random, so only the timing means anything). Refuses with exit code 2 without CUDA.
Usage: python benchmarks/probe_speed.py [--repeats 7] [--batch 16] [--shape embedded|7b]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from dftlens import load_model
from dftlens.analysis.lens import measure
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import load_words
from dftlens.data.prompts import translation_items

from timing import interleaved_medians, print_ratios


def flops_floor(lm, seq_len: int) -> float:
    cfg = lm.config
    n_params = sum(p.numel() for p in lm.hf_model.parameters())
    embed = lm.hf_model.get_input_embeddings().weight.numel()
    body = 2 * (n_params - embed) * seq_len
    attn = 4 * lm.n_layers * seq_len**2 * cfg.num_attention_heads * cfg.head_dim
    head = 2 * lm.d_model * lm.vocab_size
    return (body + attn + lm.n_layers * head) / (body + attn + head)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shape", choices=("embedded", "7b"), default="embedded")
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
    with torch.no_grad():
        medians = interleaved_medians({
            "bare forward (logits_to_keep=1)": lambda: (lm.forward_logits(batch, logits_to_keep=1), sync()),
            "probe pass (capture + lens + reductions)": lambda: (
                measure(lm, items, token_sets, batch_size=len(items), progress=False), sync()),
        }, repeats=args.repeats)
    floor = flops_floor(lm, seq_len)
    ratio = medians["probe pass (capture + lens + reductions)"] / medians["bare forward (logits_to_keep=1)"]
    print(f"{lm.name}: {lm.dtype} on {lm.device}; batch {len(items)} prompts, mean {seq_len} tokens, "
          f"{lm.n_layers} layers, vocab {lm.vocab_size}")
    print_ratios(medians, "bare forward (logits_to_keep=1)")
    print(f"arithmetic floor {floor:.3f}; measured / floor = {ratio / floor:.3f} (target <= 1.2)")


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
