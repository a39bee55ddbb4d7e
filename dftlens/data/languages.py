"""Language codes dftlens knows: names for prompts, scripts for the token-share view."""

from __future__ import annotations

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
    return NATIVE_NAMES.get(code, code)
