"""Prompt builders for Wendler et al.'s three word tasks.

Each prompt ends right where the model should start the answer word, so the
logit lens at the last position measures which language the answer is in.

- translation: ``Français: "fleur" - 中文: "花"`` x demos, then ``Français: "eau" - 中文: "``
- repetition: the same word on both sides (``中文: "花" - 中文: "花"``)
- cloze: a sentence with the word blanked out and the word as answer,
  built from the parallel sentences wherever a concept's word occurs as a WHOLE
  word in the target-language sentence and its English word in the English
  sentence (see :func:`find_whole_word`: never "week" inside "weekend", "vache"
  inside "vaches", 鸟 inside 鸟儿).

Demonstrations never include the query concept; they are drawn with a seeded
generator so that runs are reproducible.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, replace

from .languages import native_name
from .parallel import ParallelData

TASKS = ("translation", "repetition", "cloze")


@dataclass(frozen=True)
class PromptItem:
    """One prompt of Wendler et al.'s word tasks, ending where the answer word starts.

    Fields: ``task`` (one of :data:`TASKS`), ``input_lang``, ``target_lang``, ``item_id`` (the
    concept's id), ``prompt``, ``answer`` (the word in the target language), ``answer_en`` (its
    English word, the latent-language candidate) and ``answer_input`` (the word in the input
    language).
    """

    task: str
    input_lang: str
    target_lang: str
    item_id: str
    prompt: str
    answer: str  # the expected word in the target language
    answer_en: str  # its English version (the latent-language candidate)
    answer_input: str  # the word in the input language

    @property
    def label(self) -> str:
        """How messages name this item: ``item w3 (translation fr->zh)``."""
        return f"item {self.item_id} ({self.task} {self.input_lang}->{self.target_lang})"


def _pair_line(src_lang: str, src: str, tgt_lang: str, tgt: str | None) -> str:
    left = f'{native_name(src_lang)}: "{src}" - {native_name(tgt_lang)}: "'
    return left if tgt is None else f'{left}{tgt}"'


def translation_items(words: ParallelData, input_lang: str, target_lang: str,
                      n_demos: int = 4, seed: int = 0) -> list[PromptItem]:
    """One translation prompt per word (Wendler et al. 2024): ``n_demos`` demonstrations, then the query.

    Lines read ``Français: "eau" - 中文: "水"``; the demonstrations never include the query
    concept and are drawn from a generator seeded by ``seed`` and the language pair.

    Raises:
        ValueError: ``words`` has ``n_demos`` rows or fewer (``random.sample`` cannot draw the demonstrations).
    """
    rng = random.Random(f"{seed}-translation-{input_lang}-{target_lang}")
    items = []
    for i, row in enumerate(words.rows):
        others = [j for j in range(len(words.rows)) if j != i]
        demos = [words.rows[j] for j in rng.sample(others, n_demos)]
        lines = [_pair_line(input_lang, d[input_lang], target_lang, d[target_lang]) for d in demos]
        lines.append(_pair_line(input_lang, row[input_lang], target_lang, None))
        items.append(PromptItem("translation", input_lang, target_lang, words.ids[i], "\n".join(lines),
                                row[target_lang], row["en"], row[input_lang]))
    return items


def repetition_items(words: ParallelData, lang: str, n_demos: int = 4, seed: int = 0) -> list[PromptItem]:
    """One repetition prompt per word: translation prompts from ``lang`` into ``lang``."""
    return [replace(item, task="repetition") for item in translation_items(words, lang, lang, n_demos, seed)]


# Chinese characters that are words of their own (particles, measure words, common verbs,
# prepositions and adverbs): next to one of these, a Han word ends. Any other Han neighbour
# may continue the word (鸟 + 儿), so the occurrence is not taken as a whole word.
_ZH_BOUNDARY = set("的了着过在是和与及或有没不也都就还又很太最更只个条张本把被对从到向往给让为于"
                   "这那哪里上下中前后边我你他她它们谁什么吗呢吧啊一二三四五六七八九十两几多少每些"
                   "用做去来说看吃喝想要会能可以把将已正得地所")

_JA_PARTICLES = set("がをにはのとでもへやか")


def _script(ch: str) -> str:
    """A coarse script class for word boundaries: han, kana (hiragana/katakana kept apart), letter, other."""
    code = ord(ch)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "han"
    if 0x3040 <= code <= 0x309F:
        return "hiragana"
    if 0x30A0 <= code <= 0x30FF or code == 0x30FC:
        return "katakana"
    if unicodedata.category(ch)[0] in "LMN":
        return "letter"
    return "other"


def _cjk_boundary(word: str, text: str, start: int, end: int, lang: str, lexicon: set[str]) -> bool:
    """Whether ``text[start:end]`` (== word) is a whole word in unspaced Chinese/Japanese text."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    # Never part of a longer word we know (the words file of that language).
    for other in lexicon:
        if len(other) > len(word) and word in other:
            for k in range(max(0, end - len(other)), start + 1):
                if text[k:k + len(other)] == other and k <= start and k + len(other) >= end:
                    return False
    for ch, first_of_word in ((before, word[0]), (after, word[-1])):
        if not ch or _script(ch) == "other":
            continue  # text edge or punctuation
        if lang == "ja":
            # Japanese: a kanji/katakana word ends at a change of script, but hiragana after it
            # may be inflection (赤い, 黄色く) and before it an honorific prefix (お茶): accept
            # hiragana only as a particle after the word, and not お/ご before it; kanji next to
            # kanji may be a compound (牛乳).
            if _script(ch) == _script(first_of_word):
                return False
            if _script(ch) == "hiragana" and (ch not in _JA_PARTICLES if ch == after else ch in "おご"):
                return False
        elif _script(ch) == "han" and ch not in _ZH_BOUNDARY:
            return False
    return True


def find_whole_word(word: str, text: str, lang: str, lexicon: set[str] | None = None) -> int | None:
    """Index of the first occurrence of ``word`` in ``text`` as a whole word, or None.

    Spaced scripts: no letter or digit may touch it on either side (Unicode-aware; an
    apostrophe or hyphen is a boundary: "l'eau"). Chinese and Japanese, which have no
    spaces: it must not lie inside a longer word of ``lexicon``, and each neighbour must
    end a word: punctuation or the text's edge; in Japanese a change of script (kanji or
    katakana word, hiragana particle); in Chinese a character from a list of one-character
    function words (的, 在, 和, 很, 只, ...). The CJK rule is a heuristic: it rejects some
    whole words rather than accept a part of a longer one."""
    if not word:
        return None
    if lang in ("zh", "ja"):
        lexicon = lexicon or set()
        start = text.find(word)
        while start >= 0:
            if _cjk_boundary(word, text, start, start + len(word), lang, lexicon):
                return start
            start = text.find(word, start + 1)
        return None
    match = re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text, flags=re.IGNORECASE if word.islower() else 0)
    return match.start() if match else None


def cloze_items(words: ParallelData, sentences: ParallelData, lang: str,
                n_demos: int = 2, seed: int = 0) -> list[PromptItem]:
    """Blank a concept's word out of a parallel sentence that contains it as a whole word
    (and whose English side contains the English word as a whole word)."""
    rng = random.Random(f"{seed}-cloze-{lang}")
    lexicon = set(words.column(lang))
    found = []  # (concept index, sentence with the blank)
    for i, row in enumerate(words.rows):
        word, en = row[lang], row["en"]
        for sent in sentences.rows:
            at = find_whole_word(word, sent[lang], lang, lexicon)
            if at is not None and find_whole_word(en, sent["en"], "en") is not None:
                text = sent[lang]
                found.append((i, text[:at] + "___" + text[at + len(word):]))
                break
    items = []
    for k, (i, blanked) in enumerate(found):
        others = [f for f in found if f[0] != i]
        demos = rng.sample(others, min(n_demos, len(others)))
        lines = [f'"{b}" → "{words.rows[j][lang]}"' for j, b in demos] + [f'"{blanked}" → "']
        row = words.rows[i]
        items.append(PromptItem("cloze", lang, lang, words.ids[i], "\n".join(lines), row[lang], row["en"], row[lang]))
    return items


def build_items(task: str, words: ParallelData, sentences: ParallelData | None,
                input_lang: str, target_lang: str, seed: int = 0) -> list[PromptItem]:
    """The prompts of one task for one language pair (repetition and cloze use ``target_lang`` only).

    Raises:
        ValueError: ``task`` is not one of :data:`TASKS`.
    """
    if task == "translation":
        return translation_items(words, input_lang, target_lang, seed=seed)
    if task == "repetition":
        return repetition_items(words, target_lang, seed=seed)
    if task == "cloze":
        return cloze_items(words, sentences, target_lang, seed=seed)
    raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
