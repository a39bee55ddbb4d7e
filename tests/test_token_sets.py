"""Answer token sets and the three overlap kinds, on hand-built vocabularies."""

from __future__ import annotations

from dftlens.analysis.run import ProbeConfig, build_prompt_items
from dftlens.analysis.token_sets import TokenSets
from dftlens.data.parallel import ParallelData


class Vocab:
    """The only thing TokenSets needs from a tokenizer: get_vocab()."""

    def __init__(self, tokens: list[str]):
        self.tokens = {tok: i for i, tok in enumerate(tokens)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.tokens)


# SentencePiece with byte fallback (Llama-2 legacy prepends "▁" to the text; Gemma marks spaces "▁").
SP = ["<unk>", "<0xE6>", "▁w", "▁wat", "water", "▁eau", "e", "水", "▁s", "▁se", "▁sept", "▁seven", "七",
      "▁pomme", "▁pomme▁de", "▁p", "▁potato", "土", "<0xE5>", "▁taxi", "▁t", "月", "月亮", "▁moon", "▁dog",
      "▁chien", "狗", "▁c", "<0xE7>", "▁voi", "▁", "▁water"]


def ids(ts: TokenSets, *tokens: str) -> frozenset[int]:
    return frozenset(ts.vocab[t] for t in tokens)


def test_sentencepiece_prefixes_marker_and_byte_fallback():
    ts = TokenSets(Vocab(SP))
    assert not ts._byte_level
    # Every prefix with and without "▁"; the bare "▁" is not a prefix of the word.
    assert ts.ids("water") == ids(ts, "▁w", "▁wat", "water", "▁water")
    # A CJK word: its own token plus the byte-fallback token of its first UTF-8 byte (水 = E6 B0 B4).
    assert ts.ids("水") == ids(ts, "水", "<0xE6>")
    # Inner spaces are "▁" in a SentencePiece vocabulary.
    assert ts.ids("pomme de terre") == ids(ts, "▁p", "▁pomme", "▁pomme▁de")
    assert ts.ids("zzz") == frozenset()


def test_byte_level_bpe_byte_prefixes():
    # GPT-2 byte-to-character table: 水 = E6 B0 B4 -> "æ°´"; a space is "Ġ".
    vocab = Vocab(["Ġwater", "w", "Ġw", "æ°´", "æ", "Ġæ°", "Ġthe", "Ġa", "Ġb", "x"])
    ts = TokenSets(vocab)
    assert ts._byte_level
    assert ts.ids("water") == ids(ts, "Ġwater", "w", "Ġw")
    # Byte prefixes, not only whole characters: the first byte alone, and two bytes after a space.
    assert ts.ids("水") == ids(ts, "æ°´", "æ", "Ġæ°")


def test_overlap_kinds_pairwise():
    ts = TokenSets(Vocab(SP))
    assert ts.overlap_kinds("water", "水", "eau") == []
    assert ts.overlap_kinds("seven", "七", "sept") == ["en_input"]  # "▁s", "▁se"
    assert ts.overlap_kinds("taxi", "taxi", "voiture") == ["en_target"]
    assert ts.overlap_kinds("moon", "月亮", "月") == ["target_input"]  # "月", "<0xE6>"
    assert ts.overlap_kinds("seven", "sept", "sept") == ["en_target", "en_input", "target_input"]
    assert ts.overlap_kinds("seven", "sept") == ["en_target"]  # no input word: repetition, cloze


def test_probe_drops_and_counts_every_overlap_kind():
    rows = [("water", "eau", "水"), ("seven", "sept", "七"), ("potato", "pomme de terre", "土豆"),
            ("taxi", "voiture", "taxi"), ("moon", "月", "月亮"), ("dog", "chien", "狗")]
    words = ParallelData([r[0] for r in rows], [{"en": en, "fr": fr, "zh": zh} for en, fr, zh in rows], "hand")
    config = ProbeConfig(pairs=[("fr", "zh")], tasks=["translation", "repetition"], max_items=None,
                         run_probes=False)
    items, counts = build_prompt_items(config, words, None, TokenSets(Vocab(SP)))
    by_task = counts.set_index("task")
    tr = by_task.loc["translation"]
    assert (tr["built"], tr["dropped_en_target"], tr["dropped_en_input"], tr["dropped_target_input"],
            tr["dropped_overlap"], tr["used"]) == (6, 1, 2, 1, 4, 2)
    assert sorted(it.item_id for it in items if it.task == "translation") == ["dog", "water"]
    # Repetition in zh: the input is the target, so only English vs target can overlap (taxi).
    rep = by_task.loc["repetition"]
    assert (rep["dropped_en_target"], rep["dropped_en_input"], rep["dropped_target_input"], rep["used"]) == (1, 0, 0, 5)
