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
BUNDLED = Path(__file__).resolve().parents[1] / "dftlens" / "data" / "bundled"


def _training_texts() -> list[str]:
    texts = []
    for name in ("words.jsonl", "sentences.jsonl"):
        for line in (BUNDLED / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.extend(v for k, v in row.items() if k != "id")
    return texts


def make_tokenizer(vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()  # SentencePiece-style "▁" word marker
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"], show_progress=False
    )
    texts = _training_texts()
    tok.train_from_iterator(texts + ['Français: "eau" - English: "water"'] * 3, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


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
    raise ValueError(family)


def build_tiny_model_dir(family: str, directory: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    tokenizer = make_tokenizer()
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
def tiny_models(tiny_dirs):
    """One LensModel per family on the TransformerLens engine (load once per session)."""
    from dftlens import load_model

    return {family: load_model(str(path)) for family, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def embedded_model():
    from dftlens import load_model

    return load_model("gemma3-270m")
