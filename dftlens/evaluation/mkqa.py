"""MKQA (Longpre et al. 2021) as an lm-eval task: open-domain questions, F1 against answers.

lm-evaluation-harness 0.4.13 has no MKQA task, so dftlens ships
``tasks/dftlens_mkqa_<lang>.yaml``. Each MKQA row holds one question in 26
languages (``queries``) and per-language answers (``answers[lang]``: a list of
``{"type", "text", "aliases", ...}``). The task asks the question zero-shot with
no context (closed-book, as in the DFT paper) and scores the generation with
MLQA-style F1 (:mod:`dftlens.evaluation.metrics`) against the answer text and its
aliases. Unanswerable questions (no answer text) are left out.

Getting the data: the Hugging Face copy (``apple/mkqa``) is a loading script,
which ``datasets`` >= 4 no longer runs. Download ``mkqa.jsonl.gz`` from
https://github.com/apple/ml-mkqa (``dataset/mkqa.jsonl.gz``) and pass it with
``dftlens eval --mkqa-file PATH`` (or set ``DFTLENS_MKQA_FILE``).
"""

from __future__ import annotations

# dftlens language code -> MKQA's code.
MKQA_LANGS = {
    "ar": "ar", "da": "da", "de": "de", "en": "en", "es": "es", "fi": "fi", "fr": "fr", "he": "he",
    "hu": "hu", "it": "it", "ja": "ja", "km": "km", "ko": "ko", "ms": "ms", "nl": "nl", "no": "no",
    "pl": "pl", "pt": "pt", "ru": "ru", "sv": "sv", "th": "th", "tr": "tr", "vi": "vi",
    "zh": "zh_cn", "zh_cn": "zh_cn", "zh_hk": "zh_hk", "zh_tw": "zh_tw",
}
MKQA_URL = "https://github.com/apple/ml-mkqa/raw/main/dataset/mkqa.jsonl.gz"


def answers_for(row: dict, mkqa_lang: str) -> list[str]:
    """All acceptable answer strings (text and aliases) for one language."""
    out: list[str] = []
    for answer in (row.get("answers") or {}).get(mkqa_lang) or []:
        text = answer.get("text")
        if text:
            out.append(str(text))
            out.extend(str(a) for a in (answer.get("aliases") or []) if a)
    return out


def make_process_docs(lang: str):
    """lm-eval ``process_docs`` for MKQA in ``lang``: rows -> {question, answers}, unanswerable rows dropped.

    Raises ``KeyError`` for a language MKQA does not have (see :data:`MKQA_LANGS`).
    """
    mkqa_lang = MKQA_LANGS[lang]

    def process_docs(dataset):
        def convert(row):
            return {"question": (row.get("queries") or {}).get(mkqa_lang) or "",
                    "answers": answers_for(row, mkqa_lang)}

        converted = dataset.map(convert, remove_columns=list(dataset.column_names))
        return converted.filter(lambda row: bool(row["question"]) and len(row["answers"]) > 0)

    process_docs.__name__ = f"process_docs_{lang}"
    return process_docs


for _lang in ("en", "zh", "vi", "ar", "fr", "de", "es", "ja", "ko", "ru", "th", "tr"):
    globals()[f"process_docs_{_lang}"] = make_process_docs(_lang)
del _lang
