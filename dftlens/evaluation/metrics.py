"""Answer metrics for short-answer QA (F1, exact match) and multiple choice (accuracy, MC1).

QA scoring follows the official MLQA evaluation script (Lewis et al. 2020,
``mlqa_evaluation_v1.py``), which is SQuAD's script made multilingual and is also
how XQuAD is scored in the cross-lingual literature:

1. lower-case;
2. drop every Unicode punctuation character (category ``P*``) and ASCII punctuation;
3. drop articles where the language has them (en: a/an/the; es, de, vi and ar as
   in MLQA; fr: le/la/les/un/une/des, dftlens's own addition);
4. tokenize. Languages written with spaces are split on whitespace. Chinese and
   Japanese are not: **every CJK ideograph (and, for Japanese, every kana) is its
   own token**, and runs of other characters are split on whitespace (MLQA's
   "mixed segmentation"). Without this, F1 on Chinese would be all-or-nothing,
   because a whole Chinese answer has no spaces and would be a single token.

F1 is the harmonic mean of token precision and recall (bag of tokens); exact match
compares the normalised strings. With several gold answers a prediction gets the
best score over them. All scores are in [0, 1].

Accuracy for multiple choice is computed by lm-evaluation-harness (argmax of the
summed log-likelihood over choices); :func:`mc_accuracy` is the same rule on given
log-likelihoods, and MC1 (TruthfulQA) is accuracy with the single true answer.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

# Languages whose answers are scored per character (CJK ideographs, kana).
CHAR_LEVEL_LANGS = ("zh", "ja")

_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    # MLQA removes the Arabic definite article "ال" at the start of words.
    "ar": r"(?:^|\s)ال",
    "fr": r"\b(le|la|les|un|une|des)\b",
}

# CJK Unified Ideographs (+ Extension A, compatibility ideographs), Hiragana, Katakana.
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _punctuation() -> frozenset[str]:
    punct = {chr(i) for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")}
    return frozenset(punct | set(string.punctuation))


def base_language(lang: str | None) -> str:
    """'zh_cn' -> 'zh', 'pt-BR' -> 'pt', None -> 'en'."""
    return re.split(r"[-_]", (lang or "en").lower())[0]


def _mixed_segmentation(text: str) -> list[str]:
    punct = _punctuation()
    tokens: list[str] = []
    run = ""
    for char in text:
        if _CJK_CHAR.match(char) or char in punct:
            tokens.extend(run.split())
            run = ""
            tokens.append(char)
        else:
            run += char
    tokens.extend(run.split())
    return tokens


def answer_tokens(text: str, lang: str = "en") -> list[str]:
    """Normalised tokens of ``text`` (the units F1 counts)."""
    lang = base_language(lang)
    punct = _punctuation()
    text = "".join(ch for ch in str(text).lower() if ch not in punct)
    if lang in _ARTICLES:
        text = re.sub(_ARTICLES[lang], " ", text)
    if lang in CHAR_LEVEL_LANGS:
        return [t for t in _mixed_segmentation(text) if t.strip()]
    return text.split()


def normalize_answer(text: str, lang: str = "en") -> str:
    """``text`` as the scorers compare it: :func:`answer_tokens` joined by single spaces."""
    return " ".join(answer_tokens(text, lang))


def f1_score(prediction: str, gold: str, lang: str = "en") -> float:
    """Token-overlap F1 in [0, 1] of one prediction against one gold answer (MLQA/SQuAD scoring).

    Tokens are :func:`answer_tokens` (characters for zh/ja, as MLQA does); two empty
    answers score 1, one empty answer 0.
    """
    pred, ref = answer_tokens(prediction, lang), answer_tokens(gold, lang)
    if not pred or not ref:
        # SQuAD convention: two empty answers agree, one empty answer scores 0.
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str, lang: str = "en") -> float:
    """1.0 if the normalised prediction equals the normalised gold answer, else 0.0."""
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def best_over_answers(metric, prediction: str, answers: Iterable[str], lang: str = "en") -> float:
    """The best ``metric(prediction, answer, lang)`` over the gold ``answers`` (0.0 when there are none)."""
    answers = [a for a in answers if a is not None]
    if not answers:
        return 0.0
    return max(metric(prediction, a, lang) for a in answers)


def clean_generation(text: str) -> str:
    """The answer part of a generation: first line, surrounding spaces removed."""
    return str(text).strip().split("\n")[0].strip()


def qa_scores(prediction: str, answers: Sequence[str] | str, lang: str = "en") -> dict[str, float]:
    """``{"f1", "exact_match"}`` in [0, 1] of a generation (first line only) against the gold answers."""
    if isinstance(answers, str):
        answers = [answers]
    prediction = clean_generation(prediction)
    return {
        "f1": best_over_answers(f1_score, prediction, answers, lang),
        "exact_match": best_over_answers(exact_match, prediction, answers, lang),
    }


def _gold_answers(doc: dict) -> list[str]:
    answers = doc["answers"]
    if isinstance(answers, dict):  # SQuAD/XQuAD layout: {"text": [...], "answer_start": [...]}
        answers = answers["text"]
    return [answers] if isinstance(answers, str) else list(answers)


def make_qa_process_results(lang: str):
    """An lm-eval ``process_results`` for generate_until QA tasks in ``lang``."""

    def process_results(doc: dict, results: list[str]) -> dict[str, float]:
        return qa_scores(results[0], _gold_answers(doc), lang)

    process_results.__name__ = f"process_results_qa_{lang}"
    process_results.__qualname__ = process_results.__name__
    return process_results


# Task YAMLs refer to these as `!function dftlens.evaluation.metrics.process_results_qa_<lang>`
# (lm-eval's process_results receives no task options, hence one function per language).
QA_LANGUAGES = ("en", "zh", "fr", "vi", "ar", "es", "de", "hi", "ja", "ko", "ru", "th", "tr", "el", "ro", "pt", "it")
for _lang in QA_LANGUAGES:
    globals()[f"process_results_qa_{_lang}"] = make_qa_process_results(_lang)
del _lang


def mc_accuracy(loglikelihoods: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """Accuracy of argmax choice (lm-eval's ``acc``); with one true answer per item this is MC1."""
    if len(loglikelihoods) != len(labels) or not labels:
        raise ValueError("need one list of choice log-likelihoods per label, and at least one item")
    hits = [max(range(len(ll)), key=lambda i: ll[i]) == label for ll, label in zip(loglikelihoods, labels)]
    return sum(hits) / len(hits)


mc1 = mc_accuracy


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)), as lm-eval reports it."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, (var / n) ** 0.5
