"""The MWork-style view: which language the top decoded tokens belong to.

Zhao et al. (2024, MWork) count the languages of each layer's top-k tokens. dftlens
classifies every decoded token with ONE rule, the same for every panel and pair
(:func:`classify`), into :data:`SHARES`:

1. A token in the item's answer sets (after the overlap policy,
   :class:`~dftlens.analysis.token_sets.AnswerSets`) is ``target``, ``en`` or ``input``.
2. Otherwise its language is read from its text (:func:`token_language`): the text
   without the space marker must be letters only (Unicode categories L and M), so markup
   (``</b>``), punctuation, digits, byte tokens, pieces of a character and single
   letters of an alphabet (``▁L``) are ``other``.
   The languages in play are the item's English, input and target languages whose
   writing system matches the token's script (:func:`token_script`; Japanese takes Han
   and Kana). Among them, the token belongs to language L when its word frequency in L
   (``wordfreq``'s offline "best" word lists, Speer 2022; Zipf scale, log10 of
   occurrences per billion words) is at least :data:`MIN_ZIPF` (once per million words)
   and at least :data:`MARGIN` above every other language in play (ten times as
   frequent). A fragment that is no word (``▁Zeit`` is one, ``ung`` is not), a word
   frequent in two of the languages (``six`` in English and French, ``水`` in Chinese
   and Japanese) and a language outside the item (``▁Zeitung`` for a fr->zh item) are
   ``other``. A language wordfreq has no list for is decided by its script alone when
   it is the only language in play with that script.
3. That language is mapped to ``en``, ``target`` or ``input``; anything else is ``other``.
"""

from __future__ import annotations

import math
import unicodedata
from functools import lru_cache
from typing import Iterable

from ..data.languages import SCRIPTS

SHARES = ("en", "target", "input", "other")  # the classes classify() returns, in report order
MIN_ZIPF = 3.0  # a word at least once per million words of the language
MARGIN = 1.0  # and ten times as frequent there as in any other language in play
_LOGOGRAPHIC = ("Han", "Kana", "Hangul")  # scripts whose single characters are words (or syllables)
_FLOOR = MIN_ZIPF - MARGIN  # words rarer than this everywhere cannot change a decision

_RANGES = {
    "Han": [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF)],
    "Kana": [(0x3040, 0x30FF), (0x31F0, 0x31FF)],
    "Cyrillic": [(0x0400, 0x04FF)],
    "Arabic": [(0x0600, 0x06FF), (0x0750, 0x077F)],
    "Hangul": [(0xAC00, 0xD7AF), (0x1100, 0x11FF)],
    "Devanagari": [(0x0900, 0x097F)],
    "Thai": [(0x0E00, 0x0E7F)],
}


@lru_cache(maxsize=500_000)
def token_script(token: str) -> str:
    """The script of a decoded token's letters: Latin, Han, Kana, ... or 'none' (no letter).
    A token whose letters mix scripts is 'mixed'."""
    scripts = {_char_script(ch) for ch in token if ch.isalpha()}
    if not scripts:
        return "none"
    return scripts.pop() if len(scripts) == 1 else "mixed"


def _char_script(ch: str) -> str:
    code = ord(ch)
    for script, ranges in _RANGES.items():
        if any(lo <= code <= hi for lo, hi in ranges):
            return script
    return "Latin" if "LATIN" in unicodedata.name(ch, "") else "other"


def matches_language(script: str, lang: str) -> bool:
    """Whether a token's script (from :func:`token_script`) is the writing system of ``lang``.

    Languages not in :data:`~dftlens.data.languages.SCRIPTS` count as Latin; Japanese accepts
    Kana and Han.
    """
    wanted = SCRIPTS.get(lang, "Latin")
    if wanted == "Japanese":
        return script in ("Kana", "Han")
    return script == wanted


@lru_cache(maxsize=None)
def _zipf_table(lang: str) -> dict[str, float] | None:
    """``wordfreq``'s word -> Zipf frequency for ``lang`` (words above the floor only), or None
    when wordfreq has no list for it. Offline: the lists ship inside the package."""
    import wordfreq

    if lang not in wordfreq.available_languages(wordlist="best"):
        return None
    freqs = wordfreq.get_frequency_dict(lang, wordlist="best")
    return {word: math.log10(f) + 9 for word, f in freqs.items() if math.log10(f) + 9 >= _FLOOR}


@lru_cache(maxsize=200_000)
def token_language(text: str | None, languages: tuple[str, ...]) -> str | None:
    """The language of ``languages`` a decoded token's text belongs to, or None (see the module
    docstring: letters only, script, then wordfreq's Zipf frequencies with :data:`MIN_ZIPF` and
    :data:`MARGIN`). ``text`` is the token as text (space marker as a space; None for a byte
    token)."""
    word = (text or "").strip()
    if not word or not all(unicodedata.category(ch)[0] in "LM" for ch in word):
        return None
    script = token_script(word)
    if len(word) == 1 and script not in _LOGOGRAPHIC:
        return None  # one letter of an alphabet is a fragment, not a word
    in_play = [lang for lang in dict.fromkeys(languages) if matches_language(script, lang)]
    if not in_play:
        return None
    key = word.casefold()
    zipf = {}
    for lang in in_play:
        table = _zipf_table(lang)
        if table is None:
            if len(in_play) == 1:
                return lang  # no word list: the script alone decides
            return None
        zipf[lang] = table.get(key, 0.0)
    best = max(zipf, key=zipf.get)
    runner_up = max((v for lang, v in zipf.items() if lang != best), default=0.0)
    if zipf[best] >= MIN_ZIPF and zipf[best] - runner_up >= MARGIN:
        return best
    return None


def classify(text: str | None, token_id: int, input_lang: str, target_lang: str, en_ids: Iterable[int] = (),
             target_ids: Iterable[int] = (), input_ids: Iterable[int] = ()) -> str:
    """'en', 'target', 'input' or 'other' for one decoded token (the rule of the module docstring).

    ``text``: the token's text (``TokenSets.text``); ``input_lang`` equal to ``target_lang``
    (repetition, cloze) means there is no separate input class; ``*_ids``: the item's answer
    sets after its overlap policy.
    """
    if token_id in target_ids:
        return "target"
    if token_id in en_ids:
        return "en"
    if token_id in input_ids:
        return "input"
    langs = ("en", target_lang) + ((input_lang,) if input_lang not in ("en", target_lang) else ())
    lang = token_language(text, langs)
    if lang == target_lang:
        return "target"
    if lang == "en":
        return "en"
    if lang is not None and lang == input_lang:
        return "input"
    return "other"
