"""Cloze blanks are whole words, in spaced scripts and in Chinese/Japanese."""

from __future__ import annotations

import pytest

from dftlens.data.parallel import ParallelData, load_sentences, load_words
from dftlens.data.prompts import cloze_items, find_whole_word


@pytest.mark.parametrize("word, text, lang, expected", [
    ("week", "I work every weekend.", "en", None),
    ("week", "We meet every weekend, and once a week.", "en", 34),
    ("vache", "Le fermier a beaucoup de vaches.", "fr", None),
    ("eau", "Je bois de l'eau.", "fr", 13),  # an apostrophe is a boundary
    ("Hund", "Der Hund bellt.", "de", 4),
    ("鸟", "鸟儿在树上唱歌。", "zh", None),  # 鸟儿: 儿 continues the word
    ("鸟", "树上的鸟在唱歌。", "zh", 3),  # 的 ... 在: one-character function words
    ("牛", "我喝牛奶。", "zh", None),  # inside 牛奶 (in the lexicon below)
    ("赤", "このリンゴは赤いです。", "ja", None),  # 赤い: inflection, not a particle
    ("茶", "お茶を飲みます。", "ja", None),  # honorific prefix お
    ("猫", "猫がソファで寝ています。", "ja", 0),  # particle が
    ("牛", "牛乳と卵", "ja", None),  # kanji compound
])
def test_find_whole_word(word, text, lang, expected):
    assert find_whole_word(word, text, lang, lexicon={"牛奶", "牛乳"}) == expected


def test_cloze_blank_is_never_part_of_a_longer_word():
    words = ParallelData(["week", "cat", "bird"], [{"en": "week", "fr": "semaine", "zh": "周"},
                                                   {"en": "cat", "fr": "chat", "zh": "猫"},
                                                   {"en": "bird", "fr": "oiseau", "zh": "鸟"}], "hand")
    sentences = ParallelData(["s1", "s2", "s3", "s4"], [
        {"en": "The weekend is long.", "fr": "Les semaines passent.", "zh": "周末很长。"},
        {"en": "Once a week we meet.", "fr": "Une semaine passe.", "zh": "一周见一次。"},
        {"en": "The cat sleeps; birds sing.", "fr": "Le chat dort ; les oiseaux chantent.", "zh": "猫在睡觉，鸟儿在唱歌。"},
        {"en": "A bird sings.", "fr": "Un oiseau chante.", "zh": "一只鸟在唱歌。"},
    ], "hand")
    fr = {it.item_id: it.prompt.splitlines()[-1] for it in cloze_items(words, sentences, "fr")}
    assert fr == {"week": '"Une ___ passe." → "', "cat": '"Le ___ dort ; les oiseaux chantent." → "',
                  "bird": '"Un ___ chante." → "'}
    zh = {it.item_id: it.prompt.splitlines()[-1] for it in cloze_items(words, sentences, "zh")}
    # 周 in 周末 is never blanked; 一周见 is also refused (见 is not a listed boundary: the rule
    # for unspaced text is conservative), so "week" has no Chinese cloze item here.
    assert zh == {"cat": '"___在睡觉，鸟儿在唱歌。" → "', "bird": '"一只___在唱歌。" → "'}


def test_bundled_cloze_items_blank_whole_words():
    langs = ["en", "fr", "de", "zh", "ja"]
    words, sentences = load_words(None, langs), load_sentences(None, langs)
    for lang in ("fr", "de", "zh", "ja"):
        items = cloze_items(words, sentences, lang)
        assert len(items) >= 20, lang
        for it in items:
            blanked = it.prompt.splitlines()[-1]
            i = blanked.index("___")
            after = blanked[i + 3:i + 4]
            if lang in ("fr", "de"):  # never "___s", "___x", "___n"
                assert not after.isalpha() and not blanked[i - 1:i].isalpha(), blanked
