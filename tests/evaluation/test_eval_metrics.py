"""QA and multiple-choice metrics on known inputs (no model, no lm-eval run)."""

from __future__ import annotations

import math

import pytest

from dftlens.evaluation import metrics
from dftlens.evaluation.metrics import (
    answer_tokens, exact_match, f1_score, make_qa_process_results, mc1, mc_accuracy, mean_and_stderr, qa_scores,
)


def test_f1_english_squad_normalisation():
    # articles, case and punctuation are dropped before counting tokens
    assert f1_score("The Eiffel Tower!", "eiffel tower", "en") == 1.0
    assert exact_match("The Eiffel Tower!", "eiffel tower", "en") == 1.0
    # pred {red, umbrella, and, hat} vs gold {red, umbrella}: P = 2/4, R = 1 -> F1 = 2/3
    assert f1_score("a red umbrella and hat", "the red umbrella", "en") == pytest.approx(2 / 3)
    assert exact_match("a red umbrella and hat", "the red umbrella", "en") == 0.0
    assert f1_score("blue", "red", "en") == 0.0


def test_f1_chinese_is_per_character():
    # "老师" against "老师们": 2 common characters, P = 1, R = 2/3 -> F1 = 0.8.
    assert answer_tokens("老师们。", "zh") == ["老", "师", "们"]
    assert f1_score("老师", "老师们", "zh") == pytest.approx(0.8)
    # Whitespace tokenization would see one token each and score 0.
    assert f1_score("老师", "老师们", "en") == 0.0
    assert exact_match("早上 九点", "早上九点", "zh") == 1.0
    # Latin runs inside Chinese stay whole words
    assert answer_tokens("在Paris住", "zh") == ["在", "paris", "住"]


def test_mixed_scripts_languages_and_articles():
    assert f1_score("الكتاب", "كتاب", "ar") == 1.0  # MLQA drops the article al-
    assert f1_score("con mèo", "mèo", "vi") == pytest.approx(2 / 3)
    assert f1_score("la tour", "tour", "fr") == 1.0
    assert answer_tokens("ねこが好き", "ja") == list("ねこが好き")
    assert metrics.base_language("zh_cn") == "zh"


def test_best_over_answers_and_generation_cleanup():
    scores = qa_scores("  nine o'clock\nQuestion: more", ["at nine", "nine o'clock"], "en")
    assert scores == {"f1": 1.0, "exact_match": 1.0}
    assert qa_scores("", ["x"], "en") == {"f1": 0.0, "exact_match": 0.0}
    assert qa_scores("", [""], "en")["f1"] == 1.0  # SQuAD: two empty answers agree


def test_process_results_for_task_files():
    doc = {"answers": ["老师"], "question": "?", "context": "."}
    assert metrics.process_results_qa_zh(doc, ["老师。"]) == {"f1": 1.0, "exact_match": 1.0}
    squad_layout = {"answers": {"text": ["Paris", "paris city"], "answer_start": [0, 0]}}
    assert make_qa_process_results("en")(squad_layout, ["Paris city"])["f1"] == 1.0
    for lang in ("en", "zh", "fr", "vi", "ar"):  # one per task file, each scoring its own language's answers
        assert getattr(metrics, f"process_results_qa_{lang}")(doc, ["老师"]) == {"f1": 1.0, "exact_match": 1.0}
        assert getattr(metrics, f"process_results_qa_{lang}")(doc, ["学生"])["exact_match"] == 0.0


def test_accuracy_and_mc1():
    lls = [[-1.0, -0.5, -3.0], [-2.0, -4.0], [-0.1, -0.2, -0.3, -0.4]]
    assert mc_accuracy(lls, [1, 0, 3]) == pytest.approx(2 / 3)
    # TruthfulQA MC1: the single true answer is choice 0
    assert mc1([[-1.0, -2.0], [-3.0, -1.0]], [0, 0]) == 0.5
    with pytest.raises(ValueError):
        mc_accuracy([], [])


def test_mean_and_stderr_matches_lm_eval_convention():
    mean, se = mean_and_stderr([1, 0, 1, 1])
    assert mean == 0.75
    assert se == pytest.approx(math.sqrt(0.25 / 4))  # sample variance 0.25, n = 4
