"""`dftlens.lens_table` and `dftlens lens --prompt/--answer/--answer-en/--csv`, on a tiny model."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import dftlens
from dftlens.analysis.token_sets import TokenSets
from dftlens.errors import DataError
from dftlens_cli.app import app

PROMPT = 'Français: "eau" - English: "'


def test_lens_table_matches_an_independent_lens(tiny_models):
    lm = tiny_models["llama"]
    table = dftlens.lens_table(lm, PROMPT, answers={"en": "water", "fr": "eau"}, top_k=2)
    assert list(table.columns) == ["layer", "p_en", "p_fr", "entropy_bits", "top_tokens", "top_token"]
    assert list(table["layer"]) == list(range(lm.n_layers))
    names = lm.hook_names()
    cap = lm.capture(lm.tokenize([PROMPT]), names, positions="last")
    sets = TokenSets(lm.tokenizer)
    for layer in (0, lm.n_layers - 1):
        with torch.no_grad():
            logp = torch.log_softmax(lm.unembed(cap[names[layer]])[0].double(), -1)
        p = logp.exp()
        row = table.iloc[layer]
        assert row["p_en"] == pytest.approx(float(p[sorted(sets.ids("water"))].sum()), rel=1e-4, abs=1e-7)
        assert row["p_fr"] == pytest.approx(float(p[sorted(sets.ids("eau"))].sum()), rel=1e-4, abs=1e-7)
        assert row["entropy_bits"] == pytest.approx(float(-(p * logp).sum() / math.log(2)), rel=1e-4)
        assert row["top_token"] == lm.tokenizer.convert_ids_to_tokens([int(p.argmax())])[0]
    assert (table["entropy_bits"] <= math.log2(len(lm.tokenizer.get_vocab())) + 1e-6).all()
    with pytest.raises(DataError, match="No token"):
        dftlens.lens_table(lm, PROMPT, answers={"en": "\u2603\u2603"})


def test_lens_cli_prompt_answers_and_csv(tiny_dirs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "t.csv"
    args = ["lens", "--model", str(tiny_dirs["llama"]), "--prompt", PROMPT, "--answer", "eau",
            "--answer-en", "water", "--csv", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "p_en" in result.output and "p_target" in result.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["layer", "p_en", "p_target", "entropy_bits"]
    assert len(table) == 4 and table[["p_en", "p_target"]].le(1).all().all()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_entropy_bits_is_the_one_entropy_and_handles_zero_probabilities():
    from dftlens.analysis.lens import entropy_bits

    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])
    bits = entropy_bits(p.log())  # log(0) = -inf must count 0, not NaN
    assert bits.tolist() == pytest.approx([1.5, 0.0])
    uniform = torch.full((3, 8), 1 / 8).log()
    assert entropy_bits(uniform).tolist() == pytest.approx([3.0, 3.0, 3.0])


def test_lens_word_takes_its_answers_from_the_bundled_words(tiny_dirs):
    from dftlens.analysis.lens import LensTableConfig

    assert LensTableConfig(word="eau").answers() == {"en": "water", "target": "水"}
    assert LensTableConfig(word="eau", answer="氵").answers() == {"en": "water", "target": "氵"}
    assert LensTableConfig(word="zzz-not-a-word").answers() == {}  # not in the bundled words: no columns
    assert LensTableConfig(prompt="x", word="eau").answers() == {}  # an own prompt names its own answers
    result = CliRunner().invoke(app, ["lens", "--model", str(tiny_dirs["llama"]), "--word", "eau"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert re.search(r"layer\s+p_en\s+p_target\s+entropy_bits", result.output), result.output


def test_lens_table_overlap_policies(tiny_models):
    from dftlens.analysis.lens import answer_ids

    lm = tiny_models["llama"]
    answers = {"en": "seven", "fr": "sept"}  # in this small vocabulary both start with "s" only
    keep = dftlens.lens_table(lm, PROMPT, answers=answers, overlap="keep")
    assert (keep["p_en"] == keep["p_fr"]).all()  # the same token set: the lens cannot tell them apart
    with pytest.raises(DataError, match="share a token"):
        dftlens.lens_table(lm, PROMPT, answers=answers, overlap="drop")
    with pytest.raises(DataError, match="also starts another answer"):
        dftlens.lens_table(lm, PROMPT, answers=answers)  # exclusive (the default) leaves nothing
    # exclusive on a SentencePiece vocabulary: the shared "▁s", "▁se" leave both sets.
    vocab = {t: i for i, t in enumerate(["▁s", "▁se", "▁seven", "▁sept", "七", "<0xE4>"])}

    class Vocab:
        def get_vocab(self):
            return vocab

    ids = answer_ids(TokenSets(Vocab()), {"en": "seven", "fr": "sept", "zh": "七"})
    assert ids == {"en": {vocab["▁seven"]}, "fr": {vocab["▁sept"]}, "zh": {vocab["七"]}}
    kept = answer_ids(TokenSets(Vocab()), {"en": "seven", "fr": "sept"}, "keep")
    assert kept["en"] == {vocab["▁s"], vocab["▁se"], vocab["▁seven"]}
