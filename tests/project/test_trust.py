"""Issue 18, data loss and code execution: --overwrite replaces only what a dftlens run recorded as its
own (manifests), symlinks are resolved first, saved state loads without running code, one lock per real
folder, leftovers of dead runs are cleaned up. Each case asserts exit code 2, one ``error:`` line, no
traceback, and every file around ``--out`` byte for byte."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dft_data import instruction_rows, write_jsonl
from typer.testing import CliRunner

from dftlens import output_dirs, ownership
from dftlens_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_FAST = ["--steps", "2", "--batch-size", "2", "--lc", "off", "--et", "off", "--no-progress"]
PROBE_FAST = ["--no-probes", "--tasks", "translation", "--pairs", "fr:zh", "--max-items", "2", "--batch-size", "2"]


def tree(path: Path) -> dict:
    """Every path under ``path`` (links not followed) with its bytes, or the link target, or None for a folder."""
    found = {}
    for rel in ownership.listing(path):
        p = path / rel
        found[rel] = ("link", os.readlink(p)) if p.is_symlink() else (p.read_bytes() if p.is_file() else None)
    return found


def run(args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def refused(args, phrase: str, around: Path) -> str:
    """``dftlens *args`` exits 2 with one ``error:`` line holding ``phrase``; nothing under ``around`` changed."""
    before = tree(around)
    result = run(args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and "it/s]" not in line]  # no bars
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert " ".join(phrase.split()) in " ".join(lines[0].split()), lines[0]
    assert tree(around) == before
    return lines[0]


def ok(args):
    result = run(args)
    assert result.exit_code == 0, result.output
    return result


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_dirs):
    root = tmp_path_factory.mktemp("trust")
    words = [{"id": f"w{i}", "en": e, "fr": fr, "zh": zh} for i, (e, fr, zh) in
             enumerate([("water", "eau", "水"), ("fire", "feu", "火"), ("house", "maison", "房子"),
                        ("book", "livre", "书"), ("cat", "chat", "猫"), ("tree", "arbre", "树")])]
    (root / "words.jsonl").write_text("".join(json.dumps(w, ensure_ascii=False) + "\n" for w in words),
                                      encoding="utf-8")
    model = tiny_dirs["llama"]
    return {"model": model, "data": write_jsonl(root / "pairs.jsonl", instruction_rows(4)),
            "train": ["train", "--model", model, "--data", root / "pairs.jsonl", *TRAIN_FAST],
            "probe": ["probe", "--model", model, "--words", root / "words.jsonl", *PROBE_FAST]}


def user_project(root: Path) -> Path:
    """A project folder as a user has one: .git, .venv, notes and an earlier run's results."""
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\n")
    (root / "notes.txt").write_text("my notes")
    (root / "results").mkdir()
    (root / "results" / "run_config.json").write_text(json.dumps({"completed_steps": 3}))
    return root


@pytest.mark.parametrize("verb", ["train", "probe"])
def test_overwrite_never_deletes_a_users_project(files, tmp_path, verb):
    project = user_project(tmp_path / "proj")
    refused([*files[verb], "--out", project, "--overwrite"], "which no dftlens run recorded as its own", tmp_path)
    refused([*files[verb], "--out", project], "which no dftlens run recorded as its own", tmp_path)
    # through a symlink to a home-like folder: the rule applies to the target
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("secret")
    (tmp_path / "link").symlink_to(home)
    refused([*files[verb], "--out", tmp_path / "link", "--overwrite"], f"{home} holds .ssh, which no dftlens run",
            tmp_path)


def test_train_overwrite_replaces_only_its_own_run(files, tmp_path):
    out = tmp_path / "run"
    ok([*files["train"], "--save-every", "1", "--out", out])
    owned = ownership.read_manifest(out)
    assert {"log.jsonl", "final", "final/config.json", "checkpoint-000001/trainer_state/optimizer.pt"} <= owned
    assert set(ownership.listing(out)) <= owned  # every path the run wrote is recorded
    (out / "final" / "mine.txt").write_text("a file put into final/ by the user")
    refused([*files["train"], "--out", out, "--overwrite"], "holds final/mine.txt, which no dftlens run", tmp_path)
    (out / "final" / "mine.txt").unlink()
    neighbour = tmp_path / "neighbour.txt"
    neighbour.write_text("next to the run")
    ok([*files["train"], "--out", out, "--overwrite", "--seed", "3"])
    assert neighbour.read_text() == "next to the run" and not (out / "checkpoint-000001").exists()
    assert sorted(os.listdir(tmp_path)) == ["neighbour.txt", "run"]  # no lock, no staging left


def test_runs_without_a_manifest_are_refused_with_how_to_remove_them(files, tmp_path):
    out = tmp_path / "old"
    ok([*files["train"], "--out", out])
    (out / ownership.MANIFEST).unlink()  # as an earlier dftlens version left it
    line = refused([*files["train"], "--out", out, "--overwrite"], "did not record the files it wrote", tmp_path)
    assert f"rm -r {out}" in line
    refused(["train", "--resume", out], "remove them by hand", tmp_path)
    probe_out = tmp_path / "old_probe"
    ok([*files["probe"], "--out", probe_out])
    (probe_out / ownership.MANIFEST).unlink()
    refused([*files["probe"], "--out", probe_out, "--overwrite"], "remove them by hand", tmp_path)


def test_symlink_out_writes_into_the_target_and_shares_its_lock(files, tmp_path):
    target = tmp_path / "target"
    ok([*files["probe"], "--out", target])
    (tmp_path / "link").symlink_to(target)
    ok([*files["probe"], "--out", tmp_path / "link", "--overwrite", "--seed", "1"])
    assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == str(target)
    assert (target / "layers.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["link", "target"]  # no .link.tmp-*, no lock left
    assert output_dirs.lock_path(tmp_path / "link") == output_dirs.lock_path(target)


def test_leftovers_of_dead_runs_are_removed_and_nothing_else(files, tmp_path):
    out = tmp_path / "run"
    ok([*files["train"], "--out", out])
    pid = dead_pid()
    stale_ckpt = out / f".checkpoint-000001.tmp-{pid}"
    (stale_ckpt / "trainer_state").mkdir(parents=True)
    (out / f".log.jsonl.tmp-{pid}-abcd").write_text("partial")
    staging = tmp_path / f".probe.tmp-{pid}-x1"
    staging.mkdir()
    (staging / ownership.MANIFEST).write_text('{"paths": []}')
    lookalike = tmp_path / f".probe.tmp-{pid}-user"  # named like one, but no manifest: not dftlens's
    lookalike.mkdir()
    alive = tmp_path / f".probe.tmp-{os.getppid()}-y"  # a live process's: kept
    alive.mkdir()
    (alive / ownership.MANIFEST).write_text('{"paths": []}')
    ok([*files["train"], "--out", out, "--overwrite"])
    assert not stale_ckpt.exists() and not (out / f".log.jsonl.tmp-{pid}-abcd").exists()
    ok([*files["probe"], "--out", tmp_path / "probe"])
    assert not staging.exists() and lookalike.is_dir() and alive.is_dir()
    # a run killed while writing checkpoint 2: resume removes the half-written folder
    ok([*files["train"], "--steps", "3", "--save-every", "1", "--out", tmp_path / "killed"])
    killed = tmp_path / "killed"
    (killed / "final").rename(tmp_path / "final_aside")
    (killed / "checkpoint-000002").rename(killed / f".checkpoint-000002.tmp-{pid}")
    ok(["train", "--resume", killed, "--no-progress"])
    assert not (killed / f".checkpoint-000002.tmp-{pid}").exists() and (killed / "final").is_dir()


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_runs_code_from_a_checkpoint(files, tmp_path):
    out = tmp_path / "run"
    ok([*files["train"], "--steps", "3", "--save-every", "1", "--out", out])
    (out / "final").rename(tmp_path / "final")  # an unfinished run
    state = out / "checkpoint-000002" / "trainer_state" / "optimizer.pt"
    marker = tmp_path / "pwned"
    with state.open("wb") as handle:
        pickle.dump({"optimizer": _Payload(str(marker)), "rng": None}, handle)
    refused(["train", "--resume", out, "--no-progress"], "holds objects other than tensors and numbers", out)
    assert not marker.exists()


# -- remote code (item 3) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def remote_model(files, tmp_path_factory):
    """The tiny model with ``auto_map`` pointing at a module that would leave a marker file if imported."""
    root = tmp_path_factory.mktemp("remote")
    model = root / "model"
    model.mkdir()
    for p in Path(files["model"]).iterdir():
        (model / p.name).write_bytes(p.read_bytes())
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    marker = root / "ran"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return model, marker


def test_model_code_is_never_run_without_trust_remote_code(files, remote_model, tmp_path):
    model, marker = remote_model
    verbs = {
        "probe": [*files["probe"], "--out", tmp_path / "p"],
        "train": [*files["train"], "--out", tmp_path / "t"],
        "lens": ["lens", "--model", model, "--prompt", "a b", "--answer", "b", "--csv", tmp_path / "l.csv"],
        "patch": ["patch", "--n-pairs", "2", "--out", tmp_path / "pa"],
        "eval": ["eval", "--tasks", "dftlens_mcqa", "--langs", "en", "--limit", "1", "--out", tmp_path / "e"],
        "neurons": ["neurons", "--out", tmp_path / "n"],
        "steer": ["steer", "--out", tmp_path / "s"],
    }
    for name, args in verbs.items():
        if "--model" not in args:
            args = [args[0], "--model", model, *args[1:]]
        args = [model if a == files["model"] else a for a in args]
        refused(args, f"{model} ships its own Python code (auto_map in config.json), which dftlens does not run; "
                      "pass --trust-remote-code", tmp_path)
        assert not marker.exists() and os.listdir(tmp_path) == []
        assert "--trust-remote-code" in run([name, "--help"]).output


# -- signals (item 7) --------------------------------------------------------------------------------
def test_sigterm_while_saving_cleans_up_like_ctrl_c(files, tmp_path, monkeypatch):
    import signal

    import dftlens.viz.report as report

    out = tmp_path / "probe"
    ok([*files["probe"], "--out", out])
    before = tree(tmp_path)

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends

    monkeypatch.setattr(report, "write_report", terminated)
    result = run([*files["probe"], "--out", out, "--overwrite", "--seed", "2"])
    assert result.exit_code == 143 and "stopped by SIGTERM; no partial output was kept" in result.stderr
    assert tree(tmp_path) == before  # the earlier run whole, no staging folder, no lock


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_train_checkpoints_on_sigterm_and_sighup_and_resumes(files, tmp_path, monkeypatch, signame):
    import signal

    import dftlens.dft.trainer as trainer

    out = tmp_path / "run"
    real = trainer.append_log

    def stop_after_first(path, record):
        real(path, record)
        if record["step"] == 1:
            os.kill(os.getpid(), getattr(signal, signame))

    monkeypatch.setattr(trainer, "append_log", stop_after_first)
    result = run([*files["train"], "--steps", "3", "--out", out])
    assert result.exit_code == 128 + getattr(signal, signame), result.output
    assert "interrupted after step 1; checkpoint saved in" in result.stderr
    assert (out / "checkpoint-000001" / "trainer_state" / "optimizer.pt").is_file()
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the lock is gone
    monkeypatch.setattr(trainer, "append_log", real)
    ok(["train", "--resume", out, "--no-progress"])
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


# -- --config (item 9) ------------------------------------------------------------------------------
def test_config_aliases_are_refused_and_values_never_shown_whole(files, tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
        for i in range(8)]
    bomb.write_text("\n".join(lines) + "\n")  # 10^9 strings once expanded
    for verb in ("probe", "train"):
        refused([verb, "--config", bomb, "--out", tmp_path / "o"], "uses a YAML alias (line 2)", tmp_path)
    big = tmp_path / "big.yaml"
    big.write_text("steps: [" + ", ".join(["123456789"] * 5000) + "]\n")
    line = refused(["train", "--config", big, "--out", tmp_path / "o"], "steps must be an integer", tmp_path)
    assert len(line) < 300
    long_value = tmp_path / "long.yaml"
    long_value.write_text("backend: " + "x" * 100_000 + "\n")
    line = refused(["patch", "--config", long_value, "--out", tmp_path / "o"], "...(100003 characters)", tmp_path)
    assert len(line) < 300
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    refused(["probe", "--config", huge], "is larger than 1 MiB", tmp_path)


def test_sigterm_from_outside_checkpoints_a_real_train_process(files, tmp_path):
    """What a scheduler does: SIGTERM to the `dftlens train` process from another process."""
    import signal
    import time

    out = tmp_path / "run"
    args = [str(a) for a in files["train"][1:]]
    args[args.index("--steps") + 1] = "100000"
    proc = subprocess.Popen([sys.executable, "-m", "dftlens_cli", "train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(3000):  # until the first step is logged (or the process ended)
            if proc.poll() is not None or ((out / "log.jsonl").is_file() and (out / "log.jsonl").read_text().strip()):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    saved = json.loads((out / f"checkpoint-{steps[-1]:06d}" / "trainer_state" / "state.json").read_text())
    assert saved["step"] == steps[-1] and "Continue with: dftlens train --resume" in stderr
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the lock is gone


def test_lens_csv_overwrite_replaces_only_a_table_dftlens_wrote(files, tmp_path):
    lens = ["lens", "--model", files["model"], "--prompt", "water is", "--answer", "eau"]
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    refused([*lens, "--csv", mine], "already exists; pass --overwrite", tmp_path)
    refused([*lens, "--csv", mine, "--overwrite"], "was not written by dftlens", tmp_path)
    (tmp_path / "link.csv").symlink_to(mine)
    refused([*lens, "--csv", tmp_path / "link.csv", "--overwrite"], f"{mine} was not written by dftlens", tmp_path)
    ok([*lens, "--csv", tmp_path / "table.csv"])
    first = (tmp_path / "table.csv").read_text()
    ok([*lens, "--csv", tmp_path / "table.csv", "--overwrite", "--answer", "water"])
    assert (tmp_path / "table.csv").read_text() != first and mine.read_text() == "my,own\n1,2\n"
    assert ownership.read_manifest(tmp_path) == {"table.csv", ownership.MANIFEST}


def test_a_listed_folder_replaced_by_a_link_is_never_deleted_through(tmp_path):
    out, outside = tmp_path / "run", tmp_path / "outside"
    outputs = ["a.csv", "figures"]

    def write(overwrite):
        with output_dirs.output_dir(out, outputs, overwrite) as tmp:
            (tmp / "a.csv").write_text("x")
            (tmp / "figures").mkdir()
            (tmp / "figures" / "f.png").write_bytes(b"png")

    write(False)
    outside.mkdir()
    (outside / "f.png").write_bytes(b"the user's picture")
    shutil.rmtree(out / "figures")
    (out / "figures").symlink_to(outside)
    write(True)
    assert (outside / "f.png").read_bytes() == b"the user's picture" and (out / "figures" / "f.png").is_file()


def _hold(out, ready, release):
    with output_dirs.output_lock(out):
        ready.set()
        release.wait(120)


def test_a_link_and_its_target_are_one_writer(files, tmp_path):
    import multiprocessing

    real = tmp_path / "real"
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(real, ready, release))
    holder.start()
    try:
        assert ready.wait(120)
        for verb in ("train", "probe"):
            refused([*files[verb], "--out", tmp_path / "link"], "Another dftlens process is writing to", tmp_path)
    finally:
        release.set()
        holder.join(60)
    pid = dead_pid()
    real.mkdir()
    (real / f".log.jsonl.tmp-{pid}-zz").write_text("left by a killed run")
    ok([*files["train"], "--out", tmp_path / "link"])  # only a leftover there: a new run starts, removing it
    assert not (real / f".log.jsonl.tmp-{pid}-zz").exists() and (real / "final").is_dir()
