"""Property test of the overwrite rule (issue 18): random trees of user files (hidden folders, symlinks,
nested dftlens runs) inside and next to ``--out``, ``--out`` itself possibly a symlink; after a verb with or
without ``--overwrite`` every byte dftlens did not write is still there, and a symlink's target is never
touched. Checked on the library's two writers (whole directories swapped in: probe, eval, compare, patch,
neurons, steer; the train run directory) with many examples, and on the real ``probe`` and ``train`` CLI
verbs with the tiny models with a few."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dftlens import output_dirs, ownership
from dftlens.errors import OutputExists

OUTPUTS = ["a.csv", "figures"]
NAMES = [".git", ".venv", ".ssh", "notes.txt", "results", "figures", "run_config.json", "final", "checkpoint-000001",
         "log.jsonl", "a.csv", ".out.tmp-1-x", "data"]

# one user entry: (folder path parts, name, kind, content)
entry = st.tuples(st.one_of(st.just([]), st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)), st.sampled_from(NAMES),
                  st.sampled_from(["file", "file", "dir", "link_file", "link_dir"]), st.binary(max_size=16))
layout = st.fixed_dictionaries({
    "inside": st.lists(entry, max_size=5),  # user files inside --out
    "beside": st.lists(entry, max_size=3),  # user files next to --out
    "earlier": st.sampled_from(["none", "run", "run", "run_in_subfolder"]),  # an earlier dftlens run in --out
    "out_link": st.booleans(),  # --out is a symlink to the folder
    "tamper": st.booleans(),  # a folder the earlier run wrote replaced by a link to the user's files
    "overwrite": st.sampled_from([True, True, False]),
    "writer": st.sampled_from(["output_dir", "train_dir"]),
})


def user_state(root: Path) -> dict:
    """What the user owns under ``root``: file bytes, link targets, folders (links never followed)."""
    state = {}
    for rel in ownership.listing(root):
        p = root / rel
        state[rel] = ("link", os.readlink(p)) if p.is_symlink() else ("file", p.read_bytes()) if p.is_file() \
            else ("dir", None)
    return state


def plant(base: Path, entries, outside: Path) -> None:
    for parts, name, kind, content in entries:
        folder = base.joinpath(*parts)
        if any(p.is_symlink() for p in [folder, *folder.parents] if base in p.parents or p == base):
            continue  # never write through a link the user planted
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a file on the way
            continue
        path = folder / name
        if path.exists() or path.is_symlink():
            continue
        if kind == "file":
            path.write_bytes(content)
        elif kind == "dir":
            path.mkdir()
        elif kind == "link_file":
            path.symlink_to(outside / "secret")
        else:
            path.symlink_to(outside)


def write_output_dir(out: Path, overwrite: bool) -> None:
    with output_dirs.output_dir(out, OUTPUTS, overwrite) as tmp:
        (tmp / "a.csv").write_text("new")
        (tmp / "figures").mkdir()
        (tmp / "figures" / "f.png").write_bytes(b"png")


def write_train_dir(out: Path, overwrite: bool) -> None:
    from dftlens.dft.run_dir import check_run_out, record_saved, start_run_dir

    check_run_out(out, overwrite)
    with output_dirs.claim_output(out, check=False) as real:
        start_run_dir(real, overwrite)
        (real / "log.jsonl").write_text("{}\n")
        (real / "final").mkdir(exist_ok=True)
        (real / "final" / "config.json").write_text("{}")
        record_saved(real, "final")


WRITERS = {"output_dir": write_output_dir, "train_dir": write_train_dir}


def check_rule(root: Path, case: dict, write) -> None:
    """Build the case under ``root``, run ``write(out, overwrite)``, assert the user's bytes are all there."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"id_rsa")
    for name in ("f.png", "config.json"):  # named like files a run writes in its folders
        (outside / name).write_bytes(b"the user's " + name.encode())
    parent = root / "parent"
    parent.mkdir()
    folder = parent / "real"
    if case["earlier"] != "none":
        write(folder, False)  # an earlier run of the same writer, with its manifest
    if case["earlier"] == "run_in_subfolder":  # a nested run: not this --out's own
        folder.rename(parent / "nested")
        folder.mkdir()
        (parent / "nested").rename(folder / "nested")
    folder.mkdir(exist_ok=True)
    earlier = set(ownership.read_manifest(folder) or ())
    if case["tamper"]:
        for listed in ("figures", "final"):
            if listed in earlier:
                shutil.rmtree(folder / listed)
                (folder / listed).symlink_to(outside)
    plant(folder, [e for e in case["inside"] if "/".join([*e[0], e[1]]) not in earlier
                   and not any("/".join([*e[0], e[1]]).startswith(p + "/") for p in earlier
                               if (folder / p).is_symlink() or (folder / p).is_file())], outside)
    plant(parent, case["beside"], outside)
    out = parent / "link" if case["out_link"] else folder
    if case["out_link"]:
        out.symlink_to(folder)
    ours = ownership.read_manifest(folder) or set()
    before = {k: v for k, v in user_state(root).items() if not k.startswith("parent/real/") or
              k[len("parent/real/"):] not in ours}
    secret, everything = user_state(outside), user_state(root)
    try:
        write(out, case["overwrite"])
    except OutputExists:
        assert user_state(root) == everything  # refused: nothing changed at all
    after = user_state(root)
    missing = {k: v for k, v in before.items() if after.get(k) != v and not (v[0] == "dir" and k in after)}
    assert not missing, f"lost {sorted(missing)[:3]}"
    assert user_state(outside) == secret  # no link target touched


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=layout)
def test_overwrite_keeps_every_byte_dftlens_did_not_write(tmp_path_factory, case):
    root = tmp_path_factory.mktemp("prop")
    try:
        check_rule(root, case, WRITERS[case["writer"]])
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the real verbs, few examples (each loads the tiny model) ---------------------------------------------
runner = CliRunner()


@pytest.fixture(scope="module")
def verbs(tiny_dirs, tmp_path_factory):
    from dft_data import instruction_rows, write_jsonl

    root = tmp_path_factory.mktemp("prop_verbs")
    words = root / "words.jsonl"
    words.write_text("".join(json.dumps({"id": f"w{i}", "en": e, "fr": f, "zh": z}, ensure_ascii=False) + "\n" for i, (e, f, z)
                             in enumerate([("water", "eau", "水"), ("fire", "feu", "火"), ("house", "maison", "房子"),
                                           ("book", "livre", "书"), ("cat", "chat", "猫"), ("tree", "arbre", "树")])),
                     encoding="utf-8")
    data = write_jsonl(root / "pairs.jsonl", instruction_rows(4))
    model = str(tiny_dirs["llama"])
    return {
        "output_dir": ["probe", "--model", model, "--words", str(words), "--no-probes", "--tasks", "translation",
                       "--pairs", "fr:zh", "--max-items", "2", "--batch-size", "2"],
        "train_dir": ["train", "--model", model, "--data", str(data), "--steps", "1", "--batch-size", "2", "--lc",
                      "off", "--et", "off", "--no-progress"],
    }


@pytest.mark.usefixtures("one_thread")
@settings(max_examples=4, deadline=None, phases=[Phase.generate], database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=layout)
def test_real_verbs_keep_every_byte_dftlens_did_not_write(tmp_path_factory, verbs, case):
    def write(out: Path, overwrite: bool) -> None:
        args = [*verbs[case["writer"]], "--out", str(out), *(["--overwrite"] if overwrite else [])]
        result = runner.invoke(__import__("dftlens_cli.app", fromlist=["app"]).app, args)
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            raise OutputExists(result.stderr)

    root = tmp_path_factory.mktemp("prop_cli")
    try:
        check_rule(root, case, write)
    finally:
        shutil.rmtree(root, ignore_errors=True)
