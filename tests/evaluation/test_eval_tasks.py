"""The shipped task files register with lm-eval and read the shipped data offline;
the benchmark map resolves the paper's suite; missing data becomes a note."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from dftlens.evaluation import offline
from dftlens.evaluation.planning import plan
from dftlens.evaluation.skips import summarize_skips
from dftlens.evaluation.task_configs import load_task_yaml, shipped_dataset, xquad_task_config
from dftlens.evaluation.task_loading import load_tasks, task_manager_for
from dftlens.evaluation.task_table import BENCHMARKS, SHIPPED_LANGS, TASKS_DIR


@pytest.fixture(scope="module")
def shipped_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def test_task_files_register(shipped_manager):
    names = set(shipped_manager.all_tasks)
    for lang in SHIPPED_LANGS:
        assert {f"dftlens_mcqa_{lang}", f"dftlens_qa_{lang}", f"dftlens_mkqa_{lang}"} <= names
    assert {"dftlens_mcqa", "dftlens_qa", "dftlens_shipped"} <= names  # tags


def test_shipped_tasks_read_the_package_data_offline_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data paths must not depend on the working directory
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    planned, skipped = plan(["shipped"], list(SHIPPED_LANGS))
    assert not skipped and len(planned) == 2 * len(SHIPPED_LANGS)
    for item in planned:
        files = item.spec["dataset_kwargs"]["data_files"]
        assert all(os.path.isabs(f) and os.path.isfile(f) for f in files.values())
    task_dict, loaded, missing = load_tasks(planned, task_manager_for(planned))
    assert not missing and len(loaded) == len(planned)
    tasks = task_dict["tasks"]

    mc = tasks["dftlens_mcqa_zh"]
    docs = list(mc.test_docs())
    assert len(docs) == 85
    assert mc.doc_to_text(docs[0]).startswith("问题：") and mc.doc_to_text(docs[0]).endswith("答案：")
    assert mc.doc_to_choice(docs[0]) == docs[0]["choices"] and mc.doc_to_target(docs[0]) == docs[0]["label"]
    assert mc.config.target_delimiter == ""

    qa = tasks["dftlens_qa_en"]
    docs = list(qa.test_docs())
    assert len(docs) == 62
    prompt = qa.doc_to_text(docs[0])
    assert prompt.startswith("Context: ") and "\nQuestion: " in prompt and prompt.endswith("\nAnswer:")
    assert qa.config.generation_kwargs["until"] == ["\n"]
    # the task scores with dftlens's metric
    assert qa.process_results(docs[0], [" " + docs[0]["answers"][0]]) == {"f1": 1.0, "exact_match": 1.0}
    assert tasks["dftlens_qa_zh"].process_results({"answers": ["老师们"]}, ["老师"])["f1"] == pytest.approx(0.8)


def test_paper_suite_maps_to_lm_eval_tasks():
    planned, skipped = plan(["paper"], ["vi", "ar", "zh", "en"])
    got = {(p.benchmark, p.language): p.task_name for p in planned}
    assert got[("xnli", "vi")] == "xnli_vi"
    assert got[("xcopa", "zh")] == "xcopa_zh" and got[("xcopa", "en")] == "copa"
    assert got[("xstorycloze", "ar")] == "xstorycloze_ar"
    assert got[("xquad", "zh")] == "xquad_zh" and got[("mlqa", "vi")] == "mlqa_vi_vi"
    assert got[("truthfulqa", "en")] == "truthfulqa_mc1" and got[("truthfulqa", "ar")] == "truthfulqa_ar_mc1"
    assert got[("mmlu", "en")] == "mmlu" and got[("mmlu", "zh")] == "m_mmlu_zh"
    assert got[("mkqa", "vi")] == "dftlens_mkqa_vi"
    # languages a benchmark lacks are skipped with a note
    assert {(s.benchmark, s.language) for s in skipped} == {("xcopa", "ar"), ("xstorycloze", "vi")}
    assert all(s.kind == "no-language" for s in skipped)
    assert "XCOPA" in summarize_skips(skipped)[0]
    # every mapped name exists in this lm-eval
    manager = task_manager_for(planned)
    for p in planned:
        assert p.task_name in manager.task_index, p.task_name
    # raw lm-eval names pass through; suites expand; bad language codes are refused
    assert [p.task_name for p in plan(["arc_easy"], ["en"])[0]] == ["arc_easy"]
    assert BENCHMARKS["truthfulqa"].rename == {"acc": "mc1"}
    from dftlens.errors import DftlensError

    with pytest.raises(DftlensError, match="Not a language code"):
        plan(["xnli"], ["vietnamese!"])


def test_missing_benchmark_data_is_a_note_and_the_rest_loads(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub

    # an empty cache: nothing is downloaded, nothing is found
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    planned, _ = plan(["xnli", "dftlens_mcqa"], ["vi", "en"])
    task_dict, loaded, skipped = load_tasks(planned, task_manager_for(planned), offline=True)
    assert [i.task_name for i in loaded] == ["dftlens_mcqa_vi", "dftlens_mcqa_en"]
    assert sorted(task_dict["tasks"]) == ["dftlens_mcqa_en", "dftlens_mcqa_vi"]
    assert {(s.benchmark, s.language, s.kind) for s in skipped} == {
        ("xnli", "vi", "missing-data"), ("xnli", "en", "missing-data")}
    (line,) = summarize_skips(skipped)
    assert line.startswith("xnli (vi, en): dataset facebook/xnli (vi, en) is not on this machine.")
    assert "HF_HOME" in line and "--allow-download" in line and "datasets.load_dataset('facebook/xnli'" in line
    # offline mode is restored afterwards
    assert offline.os.environ.get("HF_DATASETS_OFFLINE") in (None, os.environ.get("HF_DATASETS_OFFLINE"))


def test_mkqa_reads_a_local_file(tmp_path):
    rows = [
        {"example_id": 1, "query": "who wrote hamlet", "queries": {"en": "who wrote hamlet", "zh_cn": "谁写了哈姆雷特"},
         "answers": {"en": [{"type": "entity", "text": "William Shakespeare", "aliases": ["Shakespeare"]}],
                     "zh_cn": [{"type": "entity", "text": "威廉·莎士比亚", "aliases": ["莎士比亚"]}]}},
        {"example_id": 2, "query": "unanswerable", "queries": {"en": "what is it", "zh_cn": "这是什么"},
         "answers": {"en": [{"type": "unanswerable", "text": None, "aliases": []}],
                     "zh_cn": [{"type": "unanswerable", "text": None, "aliases": []}]}},
    ]
    path = tmp_path / "mkqa.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    planned, _ = plan(["mkqa"], ["zh", "en"], mkqa_file=path)
    task_dict, loaded, skipped = load_tasks(planned, task_manager_for(planned))
    assert not skipped
    zh = task_dict["tasks"]["dftlens_mkqa_zh"]
    docs = list(zh.test_docs())
    assert len(docs) == 1  # the unanswerable question is dropped
    assert zh.doc_to_text(docs[0]) == "问题：谁写了哈姆雷特\n答案："
    assert zh.process_results(docs[0], ["莎士比亚"])["exact_match"] == 1.0
    # without the file: a note that says where to get it
    planned, _ = plan(["mkqa"], ["vi"])
    _, loaded, skipped = load_tasks(planned, task_manager_for(planned))
    assert not loaded and "github.com/apple/ml-mkqa" in skipped[0].reason and "--mkqa-file" in skipped[0].reason


def test_xquad_is_rescored_with_the_multilingual_metric(tmp_path):
    # lm-eval's own xquad scorer imports a module transformers 5 removed; dftlens swaps in its F1/EM.
    path = tmp_path / "xquad_zh.jsonl"
    path.write_text(json.dumps({"id": "1", "context": "安娜是老师。", "question": "安娜的工作是什么？",
                                "answers": {"text": ["老师们"], "answer_start": [3]}}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    planned, _ = plan(["xquad"], ["zh"])
    manager = task_manager_for(planned)
    cfg = xquad_task_config(manager, "xquad_zh", "zh")
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {"validation": str(path)}})
    task = manager.load([cfg])["tasks"]["xquad_zh"]
    doc = next(iter(task.validation_docs()))
    assert task.process_results(doc, ["老师"]) == {"f1": pytest.approx(0.8), "exact_match": 0.0}
    assert planned[0].note and "per character for zh" in planned[0].note


def test_task_files_work_with_plain_lm_eval_from_any_directory(tmp_path, monkeypatch):
    """What `lm_eval run --include_path <tasks dir>` does, with lm-eval's own loader and its dummy model."""
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)  # nothing of dftlens's tree is reachable by a relative path here
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    out = evaluator.simple_evaluate(model="dummy", tasks=["dftlens_mcqa_zh", "dftlens_qa_en"], task_manager=manager,
                                    limit=2, bootstrap_iters=0)
    assert out["n-samples"]["dftlens_mcqa_zh"] == {"original": 85, "effective": 2}
    assert out["n-samples"]["dftlens_qa_en"] == {"original": 62, "effective": 2}
    assert set(out["results"]["dftlens_qa_en"]) >= {"f1,none", "exact_match,none"}


def test_task_yaml_reads_as_lm_eval_does(tmp_path, shipped_manager):
    from pathlib import Path

    import lm_eval

    # a shipped file: !function resolved to the importable function
    cfg = load_task_yaml(TASKS_DIR / "dftlens_mcqa_ar.yaml", resolve_functions=True)
    assert cfg["custom_dataset"] is shipped_dataset and cfg["task"] == "dftlens_mcqa_ar"
    assert cfg["dataset_kwargs"]["data_files"] == {"test": "data/mini_mcqa_ar.jsonl"}
    # lm-eval's own XQuAD file: its include merged under the file's keys, !function kept as a path
    xquad = Path(lm_eval.__file__).parent / "tasks" / "xquad" / "xquad_ar.yaml"
    cfg = load_task_yaml(xquad, resolve_functions=False)
    assert cfg["task"] == "xquad_ar" and cfg["dataset_name"] == "xquad.ar" and cfg["dataset_path"] == "google/xquad"
    assert cfg["process_results"] == str(xquad.parent / "utils.process_results_qa") and "include" not in cfg
    # a local utils.py next to the file wins over an importable module; an include cycle is refused
    (tmp_path / "utils.py").write_text("def pick(doc):\n    return 'local'\n")
    (tmp_path / "base.yaml").write_text("task_list: [x]\nmetric: acc\nf: !function utils.pick\n")
    (tmp_path / "t.yaml").write_text("include: base.yaml\ntask: t\nmetric: f1\n")
    cfg = load_task_yaml(tmp_path / "t.yaml", resolve_functions=True)
    assert cfg["f"]({}) == "local" and cfg["metric"] == "f1" and cfg["task"] == "t" and "task_list" not in cfg
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ValueError, match="Include cycle"):
        load_task_yaml(tmp_path / "a.yaml", resolve_functions=False)
