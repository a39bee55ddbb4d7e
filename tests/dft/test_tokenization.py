"""Exact tokenisation at every segment boundary, for each family of tokenizer.

Every sequence dftlens trains on (main, LC and ET logits, the English feature
pass, the held-out English side) must be the tokenisation of its joined text, as
a model reads it at inference; the prefix/continuation split must not add or
change a token. Each tokenizer kind is built offline (tests/conftest.py).
"""

from __future__ import annotations

import json

import pytest
from conftest import TOKENIZER_KINDS, make_tokenizer
from dft_data import instruction_rows, write_jsonl

from dftlens.data.instruction_files import load_instructions
from dftlens.data.instructions import PromptFormat, encode_pair, encode_pairs
from dftlens.dft.batches import IGNORE, collate


@pytest.fixture(scope="module", params=TOKENIZER_KINDS)
def tokenizer(request):
    return make_tokenizer(kind=request.param)


def joined_ids(tok, text: str, eos: bool) -> list[int]:
    """What the model sees at inference: the whole text in one call, BOS by the tokenizer's convention."""
    ids = tok(text, add_special_tokens=True)["input_ids"]
    return ids + ([tok.eos_token_id] if eos else [])


def expected_texts(fmt: PromptFormat, pair) -> dict[str, tuple[str, str, bool]]:
    tgt, en = fmt.prompt_text(pair.tgt), fmt.prompt_text(pair.en)
    return {
        "main": (tgt, pair.tgt.output, True),
        "lc": (tgt, pair.en.query, False),
        "et": (tgt, pair.en.output, True),
        "english": (en, "", False),
        "en_main": (en, pair.en.output, True),
    }


def test_every_sequence_is_the_joined_text_tokenised_once(tokenizer, tmp_path):
    data = load_instructions(None, "zh", limit=40)
    extra = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(6)), "fr")
    fmt = PromptFormat(tokenizer)
    checked = 0
    for pair in data.pairs + extra.pairs:
        enc = encode_pair(pair, fmt)
        for name, (prefix, cont, eos) in expected_texts(fmt, pair).items():
            seq = getattr(enc, name)
            assert seq.ids == joined_ids(tokenizer, prefix + cont, eos), (name, pair.where)
            # The prefix tokens lie inside the prefix text, the next one reaches past it.
            enc_off = tokenizer(prefix + cont, add_special_tokens=False, return_offsets_mapping=True)
            offsets = [(0, 0)] * (len(seq.ids) - len(enc_off["input_ids"]) - eos) + enc_off["offset_mapping"]
            assert all(end <= len(prefix) for _, end in offsets[: seq.prefix]), name
            if cont:
                assert offsets[seq.prefix][1] > len(prefix), name
            if tokenizer.unk_token_id not in seq.ids:  # lossless: the pieces spell the whole text
                whole = tokenizer.decode(seq.ids, skip_special_tokens=True)
                assert whole.strip(" ") == (prefix + cont).strip(" "), (name, whole)
            assert seq.prefix >= 1 and seq.prefix <= len(seq.ids)
            assert 0 <= seq.shared <= seq.prefix and seq.ids[: seq.shared] == enc.main.ids[: seq.shared]
            if cont:
                # The continuation starts where the text does: no spurious word-start marker.
                first = tokenizer.convert_ids_to_tokens(seq.continuation[:1])[0]
                assert first not in ("▁", "Ġ"), (name, pair.where, first)
            checked += 1
    assert checked == 5 * (40 + 6)


def test_the_legacy_prefix_no_longer_leaks_into_the_response():
    """Llama-2/Mistral style: a string tokenised alone starts with "▁"; inside the sequence it must not."""
    tok = make_tokenizer(kind="sentencepiece_legacy")
    assert tok.convert_ids_to_tokens(tok("法国", add_special_tokens=False)["input_ids"])[0] == "▁"
    data = load_instructions(None, "zh", limit=40)
    fmt = PromptFormat(tok)
    wrong = 0
    for pair in data.pairs:
        enc = encode_pair(pair, fmt)
        alone = fmt.ids(pair.tgt.output)  # the old way: the response tokenised by itself
        wrong += enc.main.continuation[: len(alone)] != alone
        assert tok.convert_ids_to_tokens(enc.main.continuation)[0] != "▁"
        assert tok.decode(enc.main.continuation, skip_special_tokens=True) == pair.tgt.output
        assert tok.decode(enc.lc.continuation) == pair.en.query
    assert wrong == 40  # every example differs from the separately tokenised pieces


@pytest.mark.parametrize("kind", ["byte_level", "metaspace", "sentencepiece_legacy"])
def test_a_token_across_the_boundary_belongs_to_the_continuation(kind):
    tok = make_tokenizer(kind=kind)
    fmt = PromptFormat(tok)
    prefix, cont = "### Response:\nThe capit", "al of France is Paris."
    seq = fmt.encode(prefix, cont, eos=True)
    assert seq.ids == joined_ids(tok, prefix + cont, eos=True)
    enc = tok(prefix + cont, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(0, 0)] + enc["offset_mapping"]  # BOS first
    assert all(end <= len(prefix) for _, end in offsets[: seq.prefix])
    start, end = offsets[seq.prefix]
    assert end > len(prefix)  # the first predicted token reaches into the continuation
    assert seq.prefix < len(seq.ids) and seq.continuation[-1] == tok.eos_token_id


def test_chat_template_sequences_are_exact(tokenizer, tmp_path):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path) if tokenizer.name_or_path else tokenizer
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<eos>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    fmt = PromptFormat(tok, template="chat")
    pair = load_instructions(write_jsonl(tmp_path / "c.jsonl", instruction_rows(2)), "zh").pairs[0]
    enc = encode_pair(pair, fmt)
    prompt = fmt.prompt_text(pair.tgt)
    assert enc.main.ids == joined_ids(tok, prompt + pair.tgt.output + "<eos>", eos=False)
    assert enc.main.ids.count(tok.bos_token_id) == 1 and enc.main.ids[-1] == tok.eos_token_id


def test_collate_labels_follow_the_segments(tokenizer, tmp_path):
    data = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(4)), "zh")
    pairs = encode_pairs(data, PromptFormat(tokenizer), max_length=512)
    batch = collate(pairs, "logits", "logits", tokenizer.pad_token_id, tokenizer.bos_token_id)
    for packed, name in ((batch.main, "main"), (batch.lc_logits, "lc"), (batch.et_logits, "et")):
        labels = packed.labels()
        for b, pair in enumerate(pairs):
            seq = getattr(pair, name)
            row = labels[b, : len(seq.ids)].tolist()
            assert row == [IGNORE] * seq.prefix + seq.continuation
            assert int(packed.prefix_len[b]) == seq.prefix
        assert packed.n_targets == sum(len(getattr(p, name).continuation) for p in pairs)


def test_dump_examples_on_the_tiny_llama_tokenizer(tiny_dirs, tmp_path):
    from typer.testing import CliRunner

    from dftlens_cli.app import app

    out = tmp_path / "dump"
    result = CliRunner().invoke(app, ["train", "--model", str(tiny_dirs["llama"]), "--dump-examples", "40",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and not (out / "log.jsonl").exists()  # nothing trained
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dirs["llama"]))
    spurious = 0
    for row in rows:
        for name in ("main", "lc", "et", "english"):
            seq = row[name]
            k = seq["prefix_tokens"]
            assert seq["labels"] == [-100] * k + seq["input_ids"][k:]
            assert seq["tokens"] == tok.convert_ids_to_tokens(seq["input_ids"])
            if k < len(seq["tokens"]):
                spurious += seq["tokens"][k] == "▁"
    assert spurious == 0
    fmt = PromptFormat(tok)
    for row, pair in zip(rows, load_instructions(None, "zh", limit=40).pairs):
        assert row["main"]["input_ids"] == joined_ids(tok, fmt.prompt_text(pair.tgt) + pair.tgt.output, eos=True)
        assert row["lc"]["input_ids"] == joined_ids(tok, fmt.prompt_text(pair.tgt) + pair.en.query, eos=False)
    again = CliRunner().invoke(app, ["train", "--model", str(tiny_dirs["llama"]), "--dump-examples", "2",
                                     "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
