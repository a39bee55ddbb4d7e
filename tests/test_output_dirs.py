"""dftlens.output_dirs: output directories swap in whole, one writer at a time, checked before any work."""

from __future__ import annotations

import errno
import multiprocessing
import os
import tempfile

import pytest

from dftlens import output_dirs
from dftlens.errors import DftlensError, OutputBusy, OutputExists
from dftlens.ownership import MANIFEST

OUTPUTS = ["a.csv", "b.json"]


def write_run(out, text, overwrite=False, fail=False):
    with output_dirs.output_dir(out, OUTPUTS, overwrite) as tmp:
        (tmp / "a.csv").write_text(text)
        if fail:
            raise KeyboardInterrupt  # Ctrl-C while saving
        (tmp / "b.json").write_text(text)


def test_directory_appears_whole_and_replaces_only_with_overwrite(tmp_path):
    out = tmp_path / "deep" / "run"
    write_run(out, "one")
    assert sorted(os.listdir(out)) == [MANIFEST, *OUTPUTS] and (out / "b.json").read_text() == "one"
    with pytest.raises(OutputExists, match="already holds a.csv, b.json; pass --overwrite"):
        write_run(out, "two")
    with pytest.raises(KeyboardInterrupt):
        write_run(out, "two", overwrite=True, fail=True)
    assert (out / "a.csv").read_text() == "one" and (out / "b.json").read_text() == "one"  # earlier run intact
    write_run(out, "three", overwrite=True)
    assert (out / "a.csv").read_text() == "three"
    assert sorted(os.listdir(out.parent)) == ["run"]  # no temporary dirs or lock files left


def test_failed_run_leaves_no_out_and_no_empty_parents(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path / "x" / "y" / "run", "one", fail=True)
    assert os.listdir(tmp_path) == []


def test_bad_out_refused_before_work(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExists, match="is a file, not a directory"):
        output_dirs.check_output_dir(tmp_path / "file", OUTPUTS)
    with pytest.raises(OutputExists, match="is a file, not a directory"):
        output_dirs.check_output_dir(tmp_path / "file" / "run", OUTPUTS)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExists, match=r"mixed holds notes.txt, which no dftlens run recorded as its own"):
        output_dirs.check_output_dir(tmp_path / "mixed", OUTPUTS, overwrite=True)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(DftlensError, match=r"Cannot write to .* \(read-only file system\); choose another --out"):
        output_dirs.check_output_dir(tmp_path / "new", OUTPUTS)


def _hold(out, ready, release):
    with output_dirs.output_lock(out):
        ready.set()
        release.wait(30)


def test_second_writer_is_refused_with_one_sentence(tmp_path):
    out = tmp_path / "run"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(out, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(OutputBusy, match="Another dftlens process is writing to .*run; wait"):
            write_run(out, "two")
        assert not out.exists()
    finally:
        release.set()
        holder.join(30)
    write_run(out, "three")  # free again
    with output_dirs.output_lock(out), output_dirs.output_lock(out):  # re-entrant within one process
        pass


def test_full_disk_while_saving_leaves_the_earlier_run(tmp_path):
    out = tmp_path / "run"
    write_run(out, "one")
    with pytest.raises(DftlensError, match="filled up while saving; .*run was left as it was"):
        with output_dirs.output_dir(out, OUTPUTS, overwrite=True) as tmp:
            (tmp / "a.csv").write_text("two")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (out / "a.csv").read_text() == "one" and sorted(os.listdir(tmp_path)) == ["run"]
