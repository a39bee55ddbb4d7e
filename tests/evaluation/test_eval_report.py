"""The results table, the differences to the first model and the report figures."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dftlens.evaluation.outputs import plain_table
from dftlens.evaluation.runner import EvalRun, differences, result_rows
from dftlens.evaluation.planning import PlannedTask
from dftlens.viz.eval_figures import delta_figure, report_html, scores_figure

ROWS = [
    ("base", "xnli", "vi", "acc", 0.40, 0.03), ("base", "xnli", "zh", "acc", 0.50, 0.04),
    ("dft", "xnli", "vi", "acc", 0.46, 0.03), ("dft", "xnli", "zh", "acc", 0.48, 0.04),
    ("base", "xquad", "vi", "f1", 0.20, 0.02), ("dft", "xquad", "vi", "f1", 0.25, float("nan")),
]


@pytest.fixture()
def frame():
    return pd.DataFrame(ROWS, columns=["model", "task", "language", "metric", "value", "stderr"])


def test_differences_to_first_model(frame):
    wide = differences(frame, ["base", "dft"])
    row = wide[(wide.task == "xnli") & (wide.language == "vi")].iloc[0]
    assert row["Δ dft"] == pytest.approx(0.06)
    assert wide[(wide.task == "xnli") & (wide.language == "zh")].iloc[0]["Δ dft"] == pytest.approx(-0.02)
    text = plain_table(EvalRun(frame, ["base", "dft"]))
    assert "Δ dft" in text.splitlines()[0]
    assert "40.0 ±3.0" in text and "+6.0" in text and "-2.0" in text and "25.0" in text
    assert row["Δ dft stderr"] == pytest.approx(math.sqrt(0.03**2 + 0.03**2))
    assert "+6.0 ±4.2" in text  # the difference carries its standard error, in points


def test_figures_show_the_numbers(frame):
    fig = scores_figure(frame, "acc", ["base", "dft"])
    assert [t.name for t in fig.data] == ["base", "dft"]
    assert list(fig.data[0].x) == ["xnli · vi", "xnli · zh"]
    assert list(fig.data[1].y) == pytest.approx([46.0, 48.0])
    delta = delta_figure(frame, "acc", ["base", "dft"])
    assert list(delta.data[0].y) == pytest.approx([6.0, -2.0])
    assert "difference to base of dft" in delta.layout.title.text  # the exported file names both models
    assert delta.data[0].error_y.array[0] == pytest.approx(100 * math.sqrt(0.03**2 + 0.03**2))
    page = report_html(frame, differences(frame), ["base", "dft"], skipped=["mkqa (vi): get it"], notes=["n"])
    assert page.count("plotly-graph-div") == 4 and "mkqa (vi): get it" in page and "+6.0" in page


def test_result_rows_from_lm_eval_results():
    item = PlannedTask("truthfulqa", "en", "truthfulqa_mc1", "truthfulqa_mc1", ("acc",), {"acc": "mc1"})
    item.members = ["truthfulqa_mc1"]
    results = {"truthfulqa_mc1": {"alias": "truthfulqa_mc1", "acc,none": 0.25, "acc_stderr,none": "N/A",
                                  "acc_norm,none": 0.3}}
    rows = result_rows(results, item, "m", {"truthfulqa_mc1": {"effective": 8}})
    assert rows == [{"model": "m", "task": "truthfulqa", "language": "en", "metric": "mc1", "value": 0.25,
                     "stderr": pytest.approx(float("nan"), nan_ok=True), "n": 8, "lm_eval_task": "truthfulqa_mc1"}]
