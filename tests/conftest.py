"""Tiny randomly initialised models (Llama, Gemma-2, Gemma-3 shapes) with a real tokenizer.

The tokenizer is a real BPE trained here, in a second, on dftlens's own bundled
multilingual words and sentences, so tests never download anything. Each tiny
model is saved as an ordinary Hugging Face directory and loaded through the same
``load_model`` path users take.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist each worker gets one thread: two workers x two threads on two
# cores oversubscribe the CPU and run several times slower than one thread each.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

FAMILIES = ("llama", "gemma2", "gemma3")
# Every supported family, for the architecture parity tests (the ones above plus these, 2 layers each).
MORE_FAMILIES = ("mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo2", "gpt_neox", "gpt_neox_seq", "bloom", "gpt2")
ALL_FAMILIES = FAMILIES + MORE_FAMILIES
BUNDLED = Path(__file__).resolve().parents[1] / "dftlens" / "data" / "bundled"


def _training_texts() -> list[str]:
    texts = []
    for name in ("words.jsonl", "sentences.jsonl"):
        for line in (BUNDLED / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.extend(v for k, v in row.items() if k != "id")
    return texts


TOKENIZER_KINDS = ("metaspace", "sentencepiece_legacy", "sentencepiece", "byte_level", "gemma")


def _instruction_texts() -> list[str]:
    texts = []
    for line in (BUNDLED / "instructions_train.jsonl").read_text(encoding="utf-8").splitlines()[:150]:
        for turn in json.loads(line).values():
            if isinstance(turn, dict):
                texts.append(f"### Instruction:\n{turn['instruction']}\n\n### Response:\n{turn['output']}")
    return texts


def make_tokenizer(vocab_size: int = 1024, kind: str = "metaspace"):
    """A real BPE trained on the bundled texts, in the layout of one tokenizer family.

    ``metaspace``: the suite's default (Metaspace pre-tokenizer, "▁" before every
    word and at the start of every string; what the tiny models use).
    ``sentencepiece_legacy``: Llama-2 / Mistral ``tokenizer.json`` (normalizer
    prepends "▁" to every string, spaces become "▁", byte fallback).
    ``sentencepiece``: the same without the legacy prefix (Metaspace, prepend only
    at the first word of the whole text).
    ``byte_level``: Llama-3 / Qwen style byte-level BPE (GPT-2 regex split).
    ``gemma``: Gemma's SentencePiece (spaces become "▁", no prefix, byte fallback).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    byte_fallback = kind in ("sentencepiece_legacy", "gemma")
    tok = Tokenizer(models.BPE(unk_token=None if kind == "byte_level" else "<unk>", byte_fallback=byte_fallback))
    if kind == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace()  # SentencePiece-style "▁" word marker
        tok.decoder = decoders.Metaspace()
    elif kind == "sentencepiece":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(prepend_scheme="first", split=False)
    elif kind in ("sentencepiece_legacy", "gemma"):
        steps = [normalizers.Prepend("▁")] if kind == "sentencepiece_legacy" else []
        tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", "▁")])
        tail = [decoders.Strip(" ", 1, 0)] if kind == "sentencepiece_legacy" else []
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()] + tail)
    elif kind == "byte_level":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        raise ValueError(kind)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    if byte_fallback:
        specials += [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + (256 if byte_fallback else 0), special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if kind == "byte_level" else [],
    )
    texts = _training_texts() + ['Français: "eau" - English: "water"'] * 3
    if kind != "metaspace":  # also the instruction template, so that "###" and "\n" are real tokens
        texts += _instruction_texts()
    tok.train_from_iterator(texts, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


_TOKENIZER = []


def _shared_tokenizer():
    if not _TOKENIZER:
        _TOKENIZER.append(make_tokenizer())
    return _TOKENIZER[0]


def tiny_config(family: str, vocab_size: int):
    from transformers import Gemma2Config, Gemma3TextConfig, LlamaConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    if family == "llama":
        return LlamaConfig(**common, architectures=["LlamaForCausalLM"], tie_word_embeddings=False)
    if family == "gemma2":
        # A small soft-cap so a lens that forgets it fails the tests visibly.
        return Gemma2Config(**common, architectures=["Gemma2ForCausalLM"], final_logit_softcapping=2.0,
                            attn_logit_softcapping=50.0, sliding_window=8)
    if family == "gemma3":
        return Gemma3TextConfig(**common, architectures=["Gemma3ForCausalLM"], sliding_window=8)
    return _more_config(family, vocab_size)


def _more_config(family: str, vocab_size: int, layers: int = 2):
    """TINY configs of the other supported families: 2 layers, d_model 64."""
    import transformers as T

    ids = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    llama_like = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, **ids)
    gpt_like = dict(hidden_size=64, num_hidden_layers=layers, num_attention_heads=4, **ids)
    if family == "mistral":
        return T.MistralConfig(**llama_like, head_dim=16, architectures=["MistralForCausalLM"])
    if family == "qwen2":
        return T.Qwen2Config(**llama_like, architectures=["Qwen2ForCausalLM"], tie_word_embeddings=False)
    if family == "qwen3":
        return T.Qwen3Config(**llama_like, head_dim=16, architectures=["Qwen3ForCausalLM"], tie_word_embeddings=False)
    if family == "gemma":
        return T.GemmaConfig(**llama_like, head_dim=16, architectures=["GemmaForCausalLM"])
    if family == "phi3":
        return T.Phi3Config(**llama_like, architectures=["Phi3ForCausalLM"])
    if family == "olmo2":
        return T.Olmo2Config(**llama_like, architectures=["Olmo2ForCausalLM"])
    if family in ("gpt_neox", "gpt_neox_seq"):
        return T.GPTNeoXConfig(**gpt_like, intermediate_size=128, max_position_embeddings=512, rotary_pct=0.25,
                               use_parallel_residual=family == "gpt_neox", architectures=["GPTNeoXForCausalLM"])
    if family == "bloom":
        return T.BloomConfig(hidden_size=64, n_layer=layers, n_head=4, architectures=["BloomForCausalLM"], **ids)
    if family == "gpt2":
        return T.GPT2Config(n_embd=64, n_layer=layers, n_head=4, n_positions=512, architectures=["GPT2LMHeadModel"],
                            **ids)
    raise ValueError(family)


def build_tiny_model_dir(family: str, directory: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    tokenizer = _shared_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)))
    # Random init is nearly uniform; larger weights make logits and the soft-cap matter.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def one_thread():
    """Tiny models train fastest, and least disturbed by other jobs, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_model_dir(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def family_dir(tiny_dirs, tmp_path_factory):
    """family -> its tiny model directory, built on first use (any of ALL_FAMILIES)."""
    root = tmp_path_factory.mktemp("tiny_families")
    built = dict(tiny_dirs)

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model_dir(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_models(tiny_dirs):
    """One LensModel per family on the TransformerLens engine (load once per session)."""
    from dftlens import load_model

    return {family: load_model(str(path)) for family, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def embedded_model():
    from dftlens import load_model

    return load_model("gemma3-270m")
