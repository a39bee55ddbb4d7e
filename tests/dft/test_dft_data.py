"""Parallel instruction data: layouts, validation messages, prompt formatting, batches."""

from __future__ import annotations

import json

import pytest
import torch
from dft_data import instruction_rows, write_jsonl

from dftlens.data.instruction_files import BUNDLED_HELDOUT, BUNDLED_TRAIN, load_instructions
from dftlens.data.instructions import PromptFormat, encode_pairs
from dftlens.dft.batches import IGNORE, collate
from dftlens.errors import DataError


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_dirs["gemma3"]))


def test_alpaca_layout(tmp_path):
    data = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(4)), "fr")
    assert len(data) == 4 and data.lang == "fr"
    first = data.pairs[0]
    assert first.tgt.input and first.tgt.query == f"{first.tgt.instruction}\n\n{first.tgt.input}"
    assert not data.pairs[1].en.input and data.pairs[1].en.query == data.pairs[1].en.instruction
    assert data.pairs[0].where.endswith("a.jsonl:1")


def test_flat_layout_and_query_response_objects(tmp_path):
    rows = [{"id": "x", "query_en": "Say hi.", "response_en": "Hi.", "query_zh": "打招呼。", "response_zh": "你好。"},
            {"en": {"query": "Count.", "response": "1 2 3"}, "zh": {"query": "数数。", "response": "一 二 三"}}]
    data = load_instructions(write_jsonl(tmp_path / "f.jsonl", rows), "zh")
    assert [p.tgt.query for p in data.pairs] == ["打招呼。", "数数。"]
    assert [p.en.output for p in data.pairs] == ["Hi.", "1 2 3"]
    assert data.pairs[0].id == "x"


def test_saved_hugging_face_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_list(instruction_rows(3)).save_to_disk(str(tmp_path / "ds"))
    data = load_instructions(str(tmp_path / "ds"), "zh")
    assert len(data) == 3 and data.pairs[2].where.endswith("row 2")


@pytest.mark.parametrize("mutate,expected", [
    (lambda lines: lines.__setitem__(1, '{"en": {"instruction": "x"'), r"b\.jsonl:2: not valid JSON"),
    (lambda lines: lines.__setitem__(2, json.dumps({"en": {"instruction": "a", "output": "b"},
                                                    "zh": {"instruction": "c"}})), r"b\.jsonl:3: field 'zh\.output' is missing"),
    (lambda lines: lines.__setitem__(0, json.dumps({"en": {"instruction": "a", "output": " "},
                                                    "zh": {"instruction": "c", "output": "d"}})), r"b\.jsonl:1: field 'en\.output' is empty"),
    (lambda lines: lines.__setitem__(3, json.dumps({"en": {"instruction": "a", "output": "b"},
                                                    "fr": {"instruction": "c", "output": "d"}})), r"b\.jsonl:4: language 'zh' is not in this example \(it has en, fr\)"),
    (lambda lines: lines.__setitem__(0, "[1, 2]"), r"b\.jsonl:1: expected a JSON object"),
])
def test_bad_data_is_reported_by_file_line_and_field(tmp_path, mutate, expected):
    lines = [json.dumps(r, ensure_ascii=False) for r in instruction_rows(4)]
    mutate(lines)
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        load_instructions(path, "zh")


def test_missing_file_and_english_target(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_instructions(tmp_path / "nope.jsonl", "zh")
    with pytest.raises(DataError, match="must not be English"):
        load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(2)), "en")


def test_too_long_is_reported_before_training(tmp_path, tokenizer):
    rows = instruction_rows(3)
    rows[2]["zh"]["output"] = "很长的回答。" * 100
    data = load_instructions(write_jsonl(tmp_path / "l.jsonl", rows), "zh")
    with pytest.raises(DataError, match=r"l\.jsonl:3: zh query \+ zh response is \d+ tokens, over --max-length 400"):
        encode_pairs(data, PromptFormat(tokenizer), max_length=400)
    assert len(encode_pairs(data, PromptFormat(tokenizer), max_length=400, drop_long=True)) == 2


def test_plain_template_bos_once_and_eos(tmp_path, tokenizer):
    data = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(2)), "zh")
    fmt = PromptFormat(tokenizer)
    turn = data.pairs[0].tgt
    text = fmt.prompt_text(turn)
    assert text == f"### Instruction:\n{turn.instruction}\n\n### Input:\n{turn.input}\n\n### Response:\n"
    assert "### Input" not in fmt.prompt_text(data.pairs[1].tgt)
    enc = encode_pairs(data, fmt, max_length=256)[0]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for seq in (enc.main, enc.english, enc.lc, enc.et, enc.en_main):
        assert seq.ids[0] == bos and seq.ids.count(bos) == 1
    for seq in (enc.main, enc.et, enc.en_main):
        assert seq.ids[-1] == eos and seq.ids.count(eos) == 1
    assert eos not in enc.lc.ids and enc.english.prefix == len(enc.english.ids)
    assert tokenizer.decode(enc.lc.continuation).replace("<unk><unk>", "\n\n") == data.pairs[0].en.query


def test_chat_template_that_writes_bos_gets_no_second_one(tmp_path, tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>\n"
                               "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    data = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(2)), "zh")
    fmt = PromptFormat(tokenizer, template="chat")
    assert fmt.prompt_text(data.pairs[0].tgt).startswith("<bos><user>")
    ids = fmt.encode(fmt.prompt_text(data.pairs[0].tgt)).ids
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    # The response is what the template writes for the assistant turn, without a second BOS.
    turn = data.pairs[0].tgt
    text, eos = fmt.response_text(turn)
    assert (text, eos) == (f"{turn.output}<eos>", False)
    seq = fmt.encode(fmt.prompt_text(turn), text)
    assert seq.ids == tokenizer(fmt.prompt_text(turn) + text, add_special_tokens=False)["input_ids"]
    assert seq.ids.count(tokenizer.bos_token_id) == 1 and seq.ids[-1] == tokenizer.eos_token_id
    tokenizer.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        PromptFormat(tokenizer, template="chat")


def test_collate_targets_and_pooling(tmp_path, tokenizer):
    data = load_instructions(write_jsonl(tmp_path / "a.jsonl", instruction_rows(3)), "zh")
    pairs = encode_pairs(data, PromptFormat(tokenizer), max_length=256)
    batch = collate(pairs, "logits", "feature", tokenizer.pad_token_id, tokenizer.bos_token_id)
    assert batch.et_logits is None and batch.english is not None and batch.lc_logits is not None
    for b, p in enumerate(pairs):
        row = batch.main
        n, k = len(p.main.ids), p.main.prefix
        assert row.input_ids[b, :n].tolist() == p.main.ids
        assert row.attention_mask[b].sum() == n
        kept = row.targets[b] != IGNORE
        assert row.targets[b][kept].tolist() == p.main.continuation
        assert torch.nonzero(kept)[0].item() == k - 1  # the last query token predicts the first answer token
        assert row.pool_mask[b].tolist() == [False] + [True] * (k - 1) + [False] * (row.pool_mask.shape[1] - k)
        assert batch.lc_logits.targets[b][batch.lc_logits.targets[b] != IGNORE].tolist() == p.lc.continuation
        assert int(batch.lc_logits.shared[b]) == p.lc.shared and p.lc.ids[: p.lc.shared] == p.main.ids[: p.lc.shared]


@pytest.mark.skipif(not BUNDLED_TRAIN.exists(), reason="bundled instruction data not shipped yet")
@pytest.mark.parametrize("lang", ["zh", "fr", "vi", "ar"])
def test_bundled_instructions_load(lang, tokenizer):
    train = load_instructions(None, lang)
    assert len(train) >= 200
    if BUNDLED_HELDOUT.exists():
        heldout = load_instructions(BUNDLED_HELDOUT, lang)
        assert not {p.en.query for p in train.pairs} & {p.en.query for p in heldout.pairs}
    assert encode_pairs(train, PromptFormat(tokenizer), max_length=512)
