"""Issue 18's silent wrong results and one-line errors: non-finite numbers, formula cells in CSVs,
bad settings and files refused before the model loads (the sibling of ``test_bad_input.py``).

Each CLI case asserts exit code 2, one ``error:`` line naming the cause, no traceback, and
``--out`` (and what is around it) as it was.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from dft_data import instruction_rows, write_jsonl
from test_bad_input import ok, runner, snapshot
from typer.testing import CliRunner  # noqa: F401  (runner is test_bad_input's)

from dftlens_cli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = [("water", "eau", "水"), ("fire", "feu", "火"), ("house", "maison", "房子"), ("book", "livre", "书"),
         ("cat", "chat", "猫"), ("tree", "arbre", "树")]
PROBE = ["--no-probes", "--tasks", "translation", "--pairs", "fr:zh", "--max-items", "2", "--batch-size", "2"]
TRAIN = ["--steps", "3", "--batch-size", "2", "--lc", "off", "--et", "off", "--no-progress"]


PROGRESS = re.compile(r"[^\n\r]*?\d+%\|[^|\n\r]*\|[^\]\n\r]*\]")  # a tqdm bar (model loading, the lens)


def user_error(args, phrase: str, out: Path | None = None, before=None, code: int = 2) -> str:
    """``test_bad_input.user_error`` for errors after the model loaded: progress bars may precede the line.

    Asserts exit ``code``, one ``error:`` line containing ``phrase``, last on stderr and the only
    line there that speaks of an error or a warning (the verb's own progress notes may precede it),
    no traceback, and ``out`` as it was (``before``: its snapshot; None: absent).
    """
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [p.strip() for p in PROGRESS.sub("", result.stderr).replace("\r", "\n").splitlines() if p.strip()]
    errors = [line for line in lines if "error" in line.lower() or "warn" in line.lower()]
    assert len(errors) == 1 and errors[0] == lines[-1] and lines[-1].startswith("error: "), result.stderr
    assert " ".join(phrase.split()) in " ".join(lines[-1].split()), lines[-1]
    if out is not None:
        assert snapshot(out) == before, f"{out} changed"
    return lines[-1]


def nan_model(source: Path, directory: Path, layer: int = 1) -> Path:
    """A copy of a tiny model whose block ``layer`` MLP output weights are NaN (what a bf16 overflow leaves)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, directory)
    weights = load_file(str(directory / "model.safetensors"))
    weights[f"model.layers.{layer}.mlp.down_proj.weight"].fill_(float("nan"))
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_dirs):
    root = tmp_path_factory.mktemp("bad_input_more")
    f = {"model": tiny_dirs["llama"], "nan": nan_model(tiny_dirs["llama"], root / "nan_model")}
    f["words"] = root / "words.jsonl"
    f["words"].write_text("".join(json.dumps({"id": f"w{i}", "en": e, "fr": fr, "zh": zh}, ensure_ascii=False) + "\n"
                                  for i, (e, fr, zh) in enumerate(WORDS)), encoding="utf-8")
    f["data"] = write_jsonl(root / "pairs.jsonl", instruction_rows(4))
    return f


# -- 4: non-finite activations and logits ---------------------------------------------------------
def test_nan_weights_stop_probe_lens_compare_and_eval_naming_the_layer(inputs, tmp_path):
    out, nan = tmp_path / "out", inputs["nan"]
    (tmp_path / "keep.txt").write_text("next to --out")
    around = snapshot(tmp_path / "keep.txt")
    line = user_error(["probe", "--model", nan, "--words", inputs["words"], *PROBE, "--out", out],
                      "NaN in the activations of", out)
    assert "at layer 1 (blocks.1.hook_resid_post" in line and "in float32" in line
    user_error(["lens", "--model", nan], "at layer 1 (blocks.1.hook_resid_post")
    user_error(["compare", "--model", inputs["model"], "--model", nan, "--label", "a", "--label", "b",
                "--words", inputs["words"], *PROBE, "--out", out], "at layer 1 (blocks.1.hook_resid_post", out)
    line = user_error(["eval", "--model", nan, "--tasks", "dftlens_mcqa", "--langs", "en", "--limit", "2",
                       "--threads", "1", "--out", out], "NaN in the logits of", out)
    assert "from block 1 on (blocks.1.hook_resid_post)" in line
    assert snapshot(tmp_path / "keep.txt") == around
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no --out, no lock, no temporary folder


def test_patch_stops_on_nan_weights(inputs, tmp_path):
    out = tmp_path / "patch"
    user_error(["patch", "--model", inputs["nan"], "--words", inputs["words"], "--pairs", "zh:fr>fr:zh",
                "--mean-target", "none", "--n-pairs", "2", "--out", out], "at layer 1", out)


def test_nan_weights_stop_training_at_step_1_without_a_checkpoint(inputs, tmp_path):
    out = tmp_path / "run"
    line = user_error(["train", "--model", inputs["nan"], "--data", inputs["data"], *TRAIN, "--out", out],
                      "Training stopped at step 1: L_TFT is nan")
    assert "no step had finished, so no checkpoint was written" in line
    assert not list(out.glob("checkpoint-*")) and not (out / "final").exists()


def test_a_nan_loss_mid_training_keeps_the_last_finite_checkpoint(inputs, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from dftlens.dft.losses import DFTLoss

    real, calls = DFTLoss.backward, {"n": 0}

    def nan_at_step_3(self, batch, *args, **kwargs):  # one micro-batch per step: call 3 is step 3
        values = real(self, batch, *args, **kwargs)
        calls["n"] += 1
        return {**values, "tft": float("nan")} if calls["n"] == 3 else values

    monkeypatch.setattr(DFTLoss, "backward", nan_at_step_3)
    out = tmp_path / "run"
    line = user_error(["train", "--model", inputs["model"], "--data", inputs["data"], *TRAIN, "--out", out],
                      "Training stopped at step 3: L_TFT is nan")
    kept = out / "checkpoint-000002"
    assert f"the last finite state (after step 2) is kept in {kept}" in line
    assert [json.loads(r)["step"] for r in (out / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert not (out / "final").exists()
    weights = load_file(str(kept / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    # the kept state differs from the initial weights (two steps were applied) and resumes
    initial = load_file(str(Path(inputs["model"]) / "model.safetensors"))
    assert any(not torch.equal(weights[k], initial[k]) for k in weights if k in initial)
    monkeypatch.setattr(DFTLoss, "backward", real)
    ok(["train", "--resume", kept, "--overwrite", "--no-progress"])
    assert (out / "final").is_dir()


# -- 5: non-finite settings ------------------------------------------------------------------------
@pytest.mark.parametrize("args, phrase", [
    (["--lr", "inf"], "--lr must be a finite number, not inf"),
    (["--w-et", "inf", "--et", "logits", "--et-layer", "2"], "--w-et must be a finite number, not inf"),
    (["--w-lc", "nan", "--lc", "logits", "--lc-layer", "1"], "--w-lc must be a finite number, not nan"),
    (["--max-grad-norm", "inf"], "--max-grad-norm must be a finite number"),
    (["--schedule", "bogus"], "--schedule must be one of cosine, linear, constant, not 'bogus'"),
    (["--device", "bogus"], "--device 'bogus' is not a device"),
])
def test_train_settings_refused_before_the_model_loads(inputs, tmp_path, monkeypatch, args, phrase):
    import dftlens.models.loading as loading

    monkeypatch.setattr(loading, "load_hf", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "run"
    user_error(["train", "--model", inputs["model"], "--data", inputs["data"], *TRAIN, *args, "--out", out], phrase,
               out)


def test_non_finite_numbers_in_a_config_file(inputs, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("lr: .inf\n")
    user_error(["train", "--model", inputs["model"], "--data", inputs["data"], *TRAIN, "--config", config,
                "--out", tmp_path / "run"], "--lr must be a finite number, not inf", tmp_path / "run")


def test_every_config_dataclass_checks_numbers_and_choices_generically():
    from dftlens.analysis.lens import LensTableConfig
    from dftlens.analysis.patch_config import PatchConfig
    from dftlens.analysis.probe_run import ProbeConfig
    from dftlens.config_files import check_fields
    from dftlens.dft.config import TrainConfig
    from dftlens.errors import DftlensError, NonFiniteError
    from dftlens.evaluation.config import EvalConfig
    from dftlens.models.load_settings import LoadSettings

    with pytest.raises(NonFiniteError, match="--lora-dropout must be a finite number"):
        TrainConfig(lc_signal="off", et_signal="off", lora_dropout=float("nan"))
    with pytest.raises(DftlensError, match="--dtype must be one of auto, float32, bfloat16, float16, not 'int8'"):
        LoadSettings(dtype="int8")
    with pytest.raises(DftlensError, match="--dtype must be one of"):
        EvalConfig(dtype="int8")
    with pytest.raises(DftlensError, match="--feature-norm must be one of none, center"):
        TrainConfig(lc_signal="off", et_signal="off", feature_norm="l2")
    with pytest.raises(DftlensError, match="--threads must be 0"):
        EvalConfig(threads=-1)
    for cls in (ProbeConfig, PatchConfig, LensTableConfig, EvalConfig, LoadSettings):
        check_fields(cls())  # the defaults pass


# -- the checks themselves -------------------------------------------------------------------------
def test_entropy_keeps_nan_and_counts_zero_probabilities_as_zero():
    from dftlens.analysis.lens import entropy_bits

    logp = torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]))
    assert torch.allclose(entropy_bits(logp), torch.tensor([1.0, 1.5]))
    assert torch.isnan(entropy_bits(torch.tensor([[float("nan"), -1.0]]))).all()


def test_activation_check_names_the_first_layer_and_ignores_padding():
    from dftlens.errors import NonFiniteError
    from dftlens.numerics import check_activations

    good, bad = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    bad[0, 0, 0] = float("inf")  # at a padding position (mask 0): not counted
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    check_activations({"blocks.0.hook_resid_post": good, "blocks.1.hook_resid_post": bad}, "m", torch.float32, mask)
    bad[1, 2, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"NaN in the activations of m at layer 1 \(blocks.1.hook_resid_post.* "
                                             r"in bfloat16: a bfloat16 overflow .* try --dtype float32"):
        check_activations({"blocks.0.hook_resid_post": good, "blocks.1.hook_resid_post": bad,
                           "blocks.2.hook_resid_post": bad}, "m", torch.bfloat16, mask)


def test_json_outputs_are_always_valid_json(tmp_path):
    import numpy as np

    from dftlens.io import write_json

    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.float64("inf"), 1.5], "z": np.float32(2.0)})
    text = (tmp_path / "a.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"x": None, "y": [None, 1.5], "z": 2.0}


# -- 19: formula cells in CSVs ---------------------------------------------------------------------
def test_csv_cells_that_spreadsheets_run_are_neutralised_and_read_back(tmp_path):
    import pandas as pd

    from dftlens.io import read_csv, write_csv

    frame = pd.DataFrame({"item_id": ["=HYPERLINK(\"http://x\")", "+1", "-cmd", "@SUM(A1)", "\tx", "\rx", "ok",
                                      "'=quoted"],
                          "value": [-0.5, 1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    write_csv(tmp_path / "a.csv", frame)
    raw = pd.read_csv(tmp_path / "a.csv")
    assert all(not str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in raw["item_id"])
    assert list(raw["item_id"][:4]) == ["'=HYPERLINK(\"http://x\")", "'+1", "'-cmd", "'@SUM(A1)"]
    assert list(raw["value"]) == list(frame["value"])  # numbers stay numbers, negative ones too
    back = read_csv(tmp_path / "a.csv")
    assert back["item_id"].tolist() == frame["item_id"].tolist() and back["value"].tolist() == frame["value"].tolist()


def test_probe_csvs_neutralise_formula_ids(inputs, tmp_path):
    import pandas as pd

    words = tmp_path / "evil.jsonl"
    ids = ["=1+1", "+A1", "-2", "@cmd", "w4", "w5"]
    words.write_text("".join(json.dumps({"id": i, "en": e, "fr": fr, "zh": zh}, ensure_ascii=False) + "\n"
                             for i, (e, fr, zh) in zip(ids, WORDS)), encoding="utf-8")
    out = tmp_path / "probe"
    ok(["probe", "--model", inputs["model"], "--words", words, *PROBE[:-4], "--max-items", "6", "--out", out])
    written = {"'=1+1", "'+A1", "'-2", "'@cmd", "w4", "w5"}
    cells = set(pd.read_csv(out / "lens_items.csv", dtype=str)["item_id"])
    assert cells <= written and len(cells & {"'=1+1", "'+A1", "'-2", "'@cmd"}) >= 3, cells
    table = pd.read_csv(out / "lens_items.csv", dtype=str, keep_default_na=False)
    for column in table.columns:  # no cell of any column (top tokens included) is a formula
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in table[column]
                       if not v.lstrip("-").replace(".", "", 1).replace("e-", "", 1).isdigit()), column
    from dftlens.io import read_csv

    assert set(read_csv(out / "lens_items.csv")["item_id"]) <= set(ids)  # read back as written
    assert not math.isnan(pd.read_csv(out / "lens.csv")["entropy_bits"].iloc[0])


# -- 10-17: one line, exit 2, before the model loads where the model is not needed -------------------
@pytest.fixture
def no_load(monkeypatch):
    """The cases that need no model: loading one fails the test."""
    import dftlens.models.loading as loading

    monkeypatch.setattr(loading, "load_hf", lambda *a, **k: pytest.fail("the model was loaded"))


@pytest.mark.parametrize("text, phrase", [
    ("pairs: 5\n", "pairs must be language pairs such as fr:zh (text, or a list of [input, target] pairs), not 5"),
    ("pairs: [5]\n", "pairs must be language pairs such as fr:zh"),
    ("tasks: 7\n", "tasks must be a list of names (or comma-separated text), not 7"),
    ("out: 5\n", "out must be a path (text), not 5"),
    ("max_items: [1, 2]\n", "max_items must be an integer, not [1, 2]"),
    ("top_k: .nan\n", "top_k must be an integer, not nan"),
])
def test_config_files_with_wrong_types(inputs, tmp_path, no_load, text, phrase):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    user_error(["probe", "--model", inputs["model"], "--words", inputs["words"], "--no-probes", "--config", config],
               phrase)
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_config_file_not_utf8_and_unreadable_data_files(inputs, tmp_path, no_load, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"steps: 3\nlang: caf\xe9\n")
    out = tmp_path / "run"
    user_error(["train", "--model", inputs["model"], "--config", config, "--out", out],
               f"Config file {config} is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8", out)
    # 11: a file that cannot be read (root reads anything, so the read itself is made to fail)
    real = Path.read_bytes

    def denied(self):
        if self.name in ("words.jsonl", "pairs.jsonl"):
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    user_error(["probe", "--model", inputs["model"], "--words", inputs["words"], *PROBE, "--out", out],
               f"Cannot read {inputs['words']}: Permission denied; check that it is a readable file", out)
    user_error(["train", "--model", inputs["model"], "--data", inputs["data"], *TRAIN, "--out", out],
               f"Cannot read {inputs['data']}: Permission denied", out)


@pytest.mark.parametrize("args, phrase", [
    (["lens", "--device", "bogus"], "--device 'bogus' is not a device; use cpu, cuda or cuda:N"),
    (["probe", "--device", "cuda:7"], "--device cuda:7"),
    (["lens", "--top-k", "100000"], "--top-k 100000 is more than the"),
    (["probe", "--top-k", "100000"], "--top-k 100000 is more than the"),
    (["eval", "--threads", "-1"], "--threads must be 0 (automatic) or a positive number of threads, not -1"),
    (["patch", "--layers", "3-1"], "--layers range '3-1' runs backwards; write 1-3"),
])
def test_options_refused_before_the_model_loads(inputs, tmp_path, no_load, args, phrase):
    if args[:3] == ["probe", "--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    extra = {"probe": ["--words", inputs["words"], *PROBE, "--out", tmp_path / "o"], "eval": ["--out", tmp_path / "o"],
             "patch": ["--words", inputs["words"], "--out", tmp_path / "o"], "lens": []}[args[0]]
    user_error([args[0], "--model", inputs["model"], *extra, *args[1:]], phrase, tmp_path / "o")


def test_lens_csv_that_is_a_directory_and_patch_with_too_few_words(inputs, tmp_path, no_load):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    before = snapshot(folder)
    user_error(["lens", "--model", inputs["model"], "--csv", folder, "--overwrite"],
               f"--csv {folder} is a directory; give the name of a file to write", folder, before)
    five = tmp_path / "five.jsonl"
    five.write_text("".join(inputs["words"].read_text(encoding="utf-8").splitlines(keepends=True)[:5]),
                    encoding="utf-8")
    user_error(["patch", "--model", inputs["model"], "--words", five, "--pairs", "zh:fr>fr:zh", "--mean-target", "none",
                "--out", tmp_path / "p"],
               "five.jsonl has 5 words; a patching prompt needs 6 (5 demonstrations and the word asked for)",
               tmp_path / "p")


def test_patch_without_mean_latent_prints_its_table(inputs, tmp_path):
    out = tmp_path / "p"
    result = ok(["patch", "--model", inputs["model"], "--words", inputs["words"], "--pairs", "zh:fr>fr:zh",
                 "--mean-target", "none", "--n-pairs", "2", "--layers", "1-2", "--out", out])
    assert "concept patching: zh->fr into fr->zh" in result.stdout and "mean-latent" not in result.stdout.lower()
    assert (out / "patching.csv").is_file()


def test_damaged_json_files(inputs, tmp_path):
    # 16: config.json with a string where an integer belongs
    model = tmp_path / "model"
    shutil.copytree(inputs["model"], model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "hidden_size": "64"}))
    user_error(["lens", "--model", model], "Field 'hidden_size' expected int, got str")
    # a LoRA adapter folder whose adapter_config.json is cut short
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": ')
    user_error(["lens", "--model", adapter], "adapter_config.json is damaged: not valid JSON (Expecting value at "
                                             "line 1, column 29)")


def test_damaged_run_files_on_resume(inputs, tmp_path):
    out = tmp_path / "run"
    ok(["train", "--model", inputs["model"], "--data", inputs["data"], *TRAIN, "--save-every", "1", "--out", out])
    # a partial last line in log.jsonl (a kill mid-write) is dropped on resume
    with (out / "log.jsonl").open("a") as handle:
        handle.write('{"step": 4, "lo')
    ok(["train", "--resume", out / "checkpoint-000002", "--overwrite", "--no-progress"])
    assert [json.loads(r)["step"] for r in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    # a damaged line in the middle is named
    lines = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    before = snapshot(out)
    user_error(["train", "--resume", out / "checkpoint-000002", "--overwrite", "--no-progress"],
               "log.jsonl:2: a damaged step record; fix or delete that line", out, before)
    # a damaged run_config.json in the checkpoint
    (out / "checkpoint-000002" / "run_config.json").write_text('{"model": ')
    before = snapshot(out)
    user_error(["train", "--resume", out / "checkpoint-000002", "--overwrite", "--no-progress"],
               "checkpoint-000002/run_config.json is damaged: not valid JSON", out, before)


# -- 17: input longer than the model's context --------------------------------------------------------
def test_inputs_longer_than_the_context_are_named(inputs, tmp_path, family_dir):
    long_prompt = "eau " * 700  # about 1400 tokens; the tiny models' context is 512
    for family in ("llama", "gpt2"):
        user_error(["lens", "--model", family_dir(family), "--prompt", long_prompt],
                   "the prompt is", None)
    line = user_error(["lens", "--model", family_dir("gpt2"), "--prompt", long_prompt], "tokens long")
    assert "longer than the context of" in line and "(512 tokens, max_position_embeddings)" in line
    rows = [json.loads(r) for r in inputs["words"].read_text(encoding="utf-8").splitlines()]
    rows[2]["fr"] = "maison" * 500
    words = tmp_path / "long.jsonl"
    words.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    user_error(["probe", "--model", inputs["model"], "--words", words, *PROBE[:-4], "--max-items", "6", "--out",
                tmp_path / "o"], "(translation fr->zh) is", tmp_path / "o")  # the first prompt holding the word


# -- 20: config attributes a family ignores ------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox"])
def test_a_stray_num_key_value_heads_changes_nothing(family, family_dir, tmp_path):
    from dftlens import load_model
    from dftlens.analysis.lens import lens_table

    stray = tmp_path / family
    shutil.copytree(family_dir(family), stray)
    config = json.loads((stray / "config.json").read_text())
    (stray / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 2}))
    prompt = 'Français: "eau" - 中文: "'
    plain = lens_table(load_model(str(family_dir(family))), prompt)
    for backend in ("transformer_lens", "nnsight"):
        got = lens_table(load_model(str(stray), backend=backend), prompt)
        assert torch.allclose(torch.tensor(got["entropy_bits"].to_numpy()),
                              torch.tensor(plain["entropy_bits"].to_numpy()), atol=1e-4), backend
