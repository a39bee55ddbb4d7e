"""Language codes dftlens knows: names for prompts, scripts for the token-share view."""

from __future__ import annotations

from typing import Iterable, Sequence

# The name a native speaker writes for each language: Wendler et al.'s prompts label
# each side of a translation pair in its own language ("Français", "中文").
NATIVE_NAMES = {
    "en": "English", "zh": "中文", "fr": "Français", "de": "Deutsch", "ru": "Русский",
    "ja": "日本語", "es": "Español", "vi": "Tiếng Việt", "ar": "العربية", "it": "Italiano",
    "pt": "Português", "ko": "한국어", "hi": "हिन्दी", "nl": "Nederlands", "pl": "Polski",
    "tr": "Türkçe", "id": "Bahasa Indonesia", "th": "ไทย", "sw": "Kiswahili", "fi": "Suomi",
}

# Main script of each language, used to classify decoded tokens (see analysis/writing_systems.py).
SCRIPTS = {
    "en": "Latin", "fr": "Latin", "de": "Latin", "es": "Latin", "vi": "Latin", "it": "Latin",
    "pt": "Latin", "nl": "Latin", "pl": "Latin", "tr": "Latin", "id": "Latin", "sw": "Latin",
    "fi": "Latin", "zh": "Han", "ja": "Japanese", "ru": "Cyrillic", "ar": "Arabic",
    "ko": "Hangul", "hi": "Devanagari", "th": "Thai",
}

# FLORES-200 file stems, so users can pass a FLORES directory as --sentences.
FLORES_CODES = {
    "en": "eng_Latn", "zh": "zho_Hans", "fr": "fra_Latn", "de": "deu_Latn", "ru": "rus_Cyrl",
    "ja": "jpn_Jpan", "es": "spa_Latn", "vi": "vie_Latn", "ar": "arb_Arab", "it": "ita_Latn",
    "pt": "por_Latn", "ko": "kor_Hang", "hi": "hin_Deva", "nl": "nld_Latn", "pl": "pol_Latn",
    "tr": "tur_Latn", "id": "ind_Latn", "th": "tha_Thai", "sw": "swh_Latn", "fi": "fin_Latn",
}


def native_name(code: str) -> str:
    """The language's name in itself (``"zh"`` -> ``"中文"``), as Wendler et al.'s prompts label it; else the code."""
    return NATIVE_NAMES.get(code, code)


def split_list(values: str | Iterable[str] | None, keep_repeats: bool = False) -> list[str]:
    """Comma-separated and/or repeated values -> an ordered list without repeats.

    ``"vi, ar"``, ``["vi,ar", "zh"]`` and ``("vi", "ar", "vi")`` all work (the last gives
    ``["vi", "ar"]``); empty parts are dropped and ``None`` gives ``[]``. This is the one
    parser of comma lists in dftlens (``--langs``, ``--tasks``, ``--model``,
    ``--probe-langs``, ``--lora-targets`` ...). ``keep_repeats=True`` keeps repeated values
    where a repeat means something (``compare --model m --model m``: one checkpoint twice,
    e.g. as a sanity check, told apart by ``--label``).
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part and (keep_repeats or part not in out):
                out.append(part)
    return out


def parse_pairs(pairs: str | Iterable[str | Sequence[str]] | None, known: Sequence[str] | None = None,
                what: str = "language pair") -> list[tuple[str, str]]:
    """Language pairs as ``(source, target)`` tuples, in order, without repeats.

    Accepts ``"fr:zh,de:ja"``, a list of ``"fr:zh"`` strings, or ``(src, tgt)`` tuples;
    ``"fr-zh"`` also works when the entry has no colon. With ``known``, every language
    must be one of them. ``what`` names the pairs in error messages.

    Raises:
        DataError: an entry is not two different languages, or names one not in ``known``.
    """
    from ..errors import DataError

    entries = split_list(pairs) if isinstance(pairs, str) else list(pairs or [])
    out: list[tuple[str, str]] = []
    for entry in entries:
        if isinstance(entry, str):
            parts = [p.strip() for p in entry.split(":" if ":" in entry else "-")]
        else:
            parts = [str(p).strip() for p in entry]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise DataError(f"A {what} needs two different languages, like 'fr:zh'; got {entry!r}.")
        if known is not None:
            missing = [p for p in parts if p not in known]
            if missing:
                raise DataError(f"{what.capitalize()} {entry!r}: no data for {', '.join(missing)} "
                                f"(have {', '.join(known)}).")
        pair = (parts[0], parts[1])
        if pair not in out:
            out.append(pair)
    return out


def parse_pair(pair: str | Sequence[str], what: str = "translation pair") -> tuple[str, str]:
    """One language pair, ``"fr:zh"`` or ``("fr", "zh")``; DataError as :func:`parse_pairs`."""
    from ..errors import DataError

    pairs = parse_pairs([pair.strip() if isinstance(pair, str) else pair], what=what)
    if len(pairs) != 1:
        raise DataError(f"A {what} is one pair like 'fr:zh'; got {pair!r}.")
    return pairs[0]
