"""Answer token sets, byte fallback, the three overlap policies and Dumas et al.'s first-token
sets, on hand-built vocabularies (SentencePiece-style with byte fallback, and byte-level BPE)."""

from __future__ import annotations

import pytest

from dftlens.analysis.probe_run import ProbeConfig, build_prompt_items
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import ParallelData
from dftlens.errors import DataError


class Vocab:
    """The only thing TokenSets needs from a tokenizer for prefix sets: get_vocab()."""

    def __init__(self, tokens: list[str]):
        self.tokens = {tok: i for i, tok in enumerate(tokens)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.tokens)


# SentencePiece with byte fallback (Llama-2 legacy prepends "▁" to the text; Gemma marks spaces "▁").
# 目 (E7 9B AE) and 眼 (E7 9C BC) have no token of their own: both start with <0xE7>.
SP = ["<unk>", "<0xE6>", "▁w", "▁wat", "water", "▁eau", "e", "水", "▁s", "▁se", "▁sept", "▁seven", "七",
      "▁pomme", "▁pomme▁de", "▁p", "▁potato", "土", "<0xE5>", "▁taxi", "▁t", "月", "月亮", "▁moon", "▁dog",
      "▁chien", "狗", "▁c", "<0xE7>", "▁voi", "▁", "▁water", "<0x61>", "▁a", "▁v", "▁vi", "▁village"]


def ids(ts: TokenSets, *tokens: str) -> frozenset[int]:
    return frozenset(ts.vocab[t] for t in tokens)


def test_sentencepiece_prefixes_marker_and_byte_fallback_only_without_a_character_token():
    ts = TokenSets(Vocab(SP))
    assert not ts._byte_level
    # Every prefix with and without "▁"; the bare "▁" is not a prefix of the word.
    assert ts.ids("water") == ids(ts, "▁w", "▁wat", "water", "▁water")
    # 水 has its own token: no <0xE6> (which starts most CJK characters).
    assert ts.ids("水") == ids(ts, "水")
    # 目 has none: the model starts it with its first byte, so <0xE7> is in the set.
    assert ts.ids("目") == ids(ts, "<0xE7>")
    # An English word never gets the byte token of its ASCII first letter (<0x61>).
    assert ts.vocab["<0x61>"] not in ts.ids("apple") and ts.ids("apple") == ids(ts, "▁a")
    # Inner spaces are "▁" in a SentencePiece vocabulary.
    assert ts.ids("pomme de terre") == ids(ts, "▁p", "▁pomme", "▁pomme▁de")
    assert ts.ids("zzz") == frozenset()


def test_byte_fallback_never_makes_two_words_overlap():
    ts = TokenSets(Vocab(SP))
    assert ts.ids("目") & ts.ids("眼睛") == ids(ts, "<0xE7>")  # both start with byte E7 ...
    assert not ts.overlap("目", "眼睛")  # ... which is no reason to call them overlapping
    sets = ts.answer_sets("eye", "目", "眼睛", "drop")
    assert sets.kept and sets.overlaps == ()
    sets = ts.answer_sets("eye", "目", "眼睛", "exclusive")  # nor is the byte token removed
    assert sets.target == ids(ts, "<0xE7>") and sum(sets.removed.values()) == 0


def test_byte_level_bpe_byte_prefixes():
    # GPT-2 byte-to-character table: 水 = E6 B0 B4 -> "æ°´"; a space is "Ġ".
    vocab = Vocab(["Ġwater", "w", "Ġw", "æ°´", "æ", "Ġæ°", "Ġthe", "Ġa", "Ġb", "x", "ç", "ĠçĽ"])  # çĽ = bytes E7 9B
    ts = TokenSets(vocab)
    assert ts._byte_level
    assert ts.ids("water") == ids(ts, "Ġwater", "w", "Ġw")
    # 水 is a token: its partial-byte prefixes ("æ", "Ġæ°") are byte fallback and left out.
    assert ts.ids("水") == ids(ts, "æ°´")
    # 目 (E7 9B AE) is not: the byte prefixes inside it are its fallback, never an overlap.
    assert ts.ids("目") == ids(ts, "ç", "ĠçĽ")
    assert not ts.overlap("目", "眼")
    assert ts.text("æ°´") == "水" and ts.text("Ġwater") == " water" and ts.text("æ") is None


def test_overlap_kinds_pairwise():
    ts = TokenSets(Vocab(SP))
    assert ts.overlap_kinds("water", "水", "eau") == []
    assert ts.overlap_kinds("seven", "七", "sept") == ["en_input"]  # "▁s", "▁se"
    assert ts.overlap_kinds("taxi", "taxi", "voiture") == ["en_target"]
    assert ts.overlap_kinds("moon", "月亮", "月") == ["target_input"]  # "月"
    assert ts.overlap_kinds("seven", "sept", "sept") == ["en_target", "en_input", "target_input"]
    assert ts.overlap_kinds("seven", "sept") == ["en_target"]  # no input word: repetition, cloze


def test_each_overlap_policy_on_one_item():
    ts = TokenSets(Vocab(SP))
    # seven / 七 / sept: English and the input word share "▁s", "▁se".
    excl = ts.answer_sets("seven", "七", "sept", "exclusive")
    assert excl.kept and excl.overlaps == ("en_input",)
    assert excl.en == ids(ts, "▁seven") and excl.input == ids(ts, "▁sept") and excl.target == ids(ts, "七")
    assert excl.removed == {"en": 2, "target": 0, "input": 2}
    drop = ts.answer_sets("seven", "七", "sept", "drop")
    assert not drop.kept and drop.reason == "en_input"
    keep = ts.answer_sets("seven", "七", "sept", "keep")  # Wendler: only English-target overlaps drop
    assert keep.kept and keep.en == ids(ts, "▁s", "▁se", "▁seven") and keep.removed == {"en": 0, "target": 0, "input": 0}
    # taxi / taxi: English and target are the same word.
    assert ts.answer_sets("taxi", "taxi", "voiture", "keep").reason == "en_target"
    excl = ts.answer_sets("taxi", "taxi", "voiture", "exclusive")
    assert not excl.kept and excl.reason == "empty"  # nothing is left that only one language starts
    # village / village (fr input): exclusive removes every shared token, keep keeps the item whole.
    assert ts.answer_sets("village", "村", "village", "keep").kept
    assert ts.answer_sets("village", "村", "village", "exclusive").reason == "empty"
    # Wendler's substring rule: the English word inside the target word.
    assert ts.answer_sets("taxi", "taxis", None, "keep").reason in ("en_target", "substring")
    with pytest.raises(ValueError):
        ts.answer_sets("a", "b", None, "nope")


def _words():
    rows = [("water", "eau", "水"), ("seven", "sept", "七"), ("potato", "pomme de terre", "土豆"),
            ("taxi", "voiture", "taxi"), ("moon", "月", "月亮"), ("dog", "chien", "狗")]
    return ParallelData([r[0] for r in rows], [{"en": en, "fr": fr, "zh": zh} for en, fr, zh in rows], "hand")


@pytest.mark.parametrize("policy, used, dropped, removed_en", [
    ("drop", ["dog", "water"], 4, 0),
    ("keep", ["dog", "moon", "potato", "seven", "water"], 1, 0),
    ("exclusive", ["dog", "moon", "potato", "seven", "water"], 1, 3),  # "▁s", "▁se", "▁p"
])
def test_probe_counts_per_policy(policy, used, dropped, removed_en):
    config = ProbeConfig(pairs=[("fr", "zh")], tasks=["translation", "repetition"], max_items=None,
                         run_probes=False, overlap=policy)
    items, counts = build_prompt_items(config, _words(), None, TokenSets(Vocab(SP)))
    tr = counts.set_index("task").loc["translation"]
    # The overlaps are counted whatever the policy: seven and potato (en-input: "▁s"/"▁se", "▁p"),
    # taxi (en-target), moon (target-input: "月").
    assert (tr["overlap_en_target"], tr["overlap_en_input"], tr["overlap_target_input"]) == (1, 2, 1)
    assert (tr["overlap"], tr["built"], tr["dropped"], tr["removed_en"], tr["used"]) == (
        policy, 6, dropped, removed_en, len(used))
    assert sorted(it.item_id for it in items if it.task == "translation") == used


def test_overlap_policy_is_checked_before_any_model():
    with pytest.raises(DataError, match="--overlap"):
        ProbeConfig(overlap="sometimes")


class SpaceTokenizer:
    """A tokenizer for first-token sets: greedy longest match over a SentencePiece vocabulary."""

    def __init__(self, tokens):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.inverse = {i: t for t, i in self.vocab.items()}

    def get_vocab(self):
        return dict(self.vocab)

    def __call__(self, text, add_special_tokens=False):
        text, out = text.replace(" ", "▁"), []
        while text:
            piece = next(text[:n] for n in range(len(text), 0, -1) if text[:n] in self.vocab or n == 1)
            out.append(self.vocab.get(piece, 0))
            text = text[len(piece):]
        return {"input_ids": out}

    def convert_ids_to_tokens(self, ids):
        return [self.inverse[i] for i in ids]


def test_first_token_sets_follow_dumas_et_al():
    tok = SpaceTokenizer(["<unk>", "▁", "wat", "er", "▁water", "▁wa", "水", "▁水", "▁eau", "e", "au"])
    first = TokenSets(tok, kind="first")
    # The first token of "water" and of " water" (their process_tokens_with_tokenization).
    assert first.ids("water") == {tok.vocab["wat"], tok.vocab["▁water"]}
    assert first.ids("水") == {tok.vocab["水"], tok.vocab["▁水"]}
    # A prefix set is larger: every single-token prefix.
    assert TokenSets(tok).ids("water") == {tok.vocab[t] for t in ("wat", "▁wa", "▁water")}
    with pytest.raises(ValueError):
        TokenSets(tok, kind="last")
