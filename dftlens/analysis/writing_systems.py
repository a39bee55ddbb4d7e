"""The MWork-style view: which language the top decoded tokens belong to.

Zhao et al. count the languages of each layer's top-k tokens. We classify a token
by its script (Unicode ranges), which separates English from Chinese, Japanese,
Russian or Arabic targets cleanly. A Latin-script target (French, German...)
cannot be told from English by script alone, so there a Latin token counts as
English only if it is in the English answer's token set and as target only if it
is in the target answer's set; every other token is "other". Tokens of the input
word (the model copying its input) form their own class, "input".
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from ..data.languages import SCRIPTS

SHARES = ("en", "target", "input", "other")  # the classes classify() returns, in report order

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
    """The script of a decoded token's letters: Latin, Han, Kana, ... or 'none'."""
    for ch in token:
        if not ch.isalpha():
            continue
        code = ord(ch)
        for script, ranges in _RANGES.items():
            if any(lo <= code <= hi for lo, hi in ranges):
                return script
        if "LATIN" in unicodedata.name(ch, ""):
            return "Latin"
        return "other"
    return "none"


def matches_language(script: str, lang: str) -> bool:
    """Whether a token's script (from :func:`token_script`) is the writing system of ``lang``.

    Languages not in :data:`~dftlens.data.languages.SCRIPTS` count as Latin; Japanese accepts
    Kana and Han.
    """
    wanted = SCRIPTS.get(lang, "Latin")
    if wanted == "Japanese":
        return script in ("Kana", "Han")
    return script == wanted


def classify(token: str, token_id: int, target_lang: str, en_ids: frozenset, target_ids: frozenset,
             input_ids: frozenset = frozenset()) -> str:
    """'en', 'target', 'input' or 'other' for one decoded token.

    Tokens of the input-language word itself (the model copying its input) are
    'input' whatever their script, so a French input is not counted as English.
    """
    if token_id in target_ids:
        return "target"
    if token_id in en_ids:
        return "en"
    if token_id in input_ids:
        return "input"
    script = token_script(token)
    if SCRIPTS.get(target_lang, "Latin") == "Latin":
        return "other"
    if matches_language(script, target_lang):
        return "target"
    return "en" if script == "Latin" else "other"
