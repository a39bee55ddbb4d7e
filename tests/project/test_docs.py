"""The documentation site: `mkdocs build --strict` passes offline, fetches nothing, and the README
stays a short front page that points into it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Pages other parts of the project link to by name: they must exist and be in the nav.
REQUIRED_PAGES = [
    "index.md", "getting-started.md", "data-formats.md", "scale.md", "guarantees.md", "benchmarks.md",
    "results.md", *(f"verbs/{v}.md" for v in ("lens", "probe", "patch", "compare", "train", "eval")),
    *(f"method/{m}.md" for m in ("logit-lens", "token-sets", "layer-choice", "patching", "dft-losses")),
]

# An element that makes the browser fetch something on page load (not a link the reader clicks).
_FETCH = re.compile(r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=["'](https?:)?//"""
                    r"""|<link\b[^>]*\bhref=["'](https?:)?//"""
                    r"""|@import\s+(?:url\()?["']?(https?:)?//|url\(["']?(https?:)?//""", re.IGNORECASE)


def _jupyter_path() -> str:
    """nbconvert's templates live in the data dir of the prefix it was installed into; a venv that
    borrows its packages from another one (a worktree's) does not have them under its own prefix."""
    import nbconvert

    install_prefix = Path(nbconvert.__file__).resolve().parents[4]
    return os.pathsep.join(p for p in (os.environ.get("JUPYTER_PATH", ""), str(install_prefix / "share" / "jupyter")) if p)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "JUPYTER_PATH": _jupyter_path(), "NO_MKDOCS_2_WARNING": "1",
           # no network: a plugin that tries to fetch fails instead of hanging or succeeding
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_strict_build_renders_every_page(site):
    for page in REQUIRED_PAGES:
        assert (site / page).with_suffix(".html").is_file(), page
    for notebook in ("latent_language", "dft_before_after"):
        html = (site / "tutorials" / f"{notebook}.html").read_text(encoding="utf-8")
        assert "jp-Notebook" in html or "jupyter-wrapper" in html, f"{notebook} not rendered as a notebook"
    api = (site / "api" / "models.html").read_text(encoding="utf-8")
    assert "dftlens.models.loading.load_model" in api and "doc-heading" in api  # mkdocstrings ran


def test_site_fetches_nothing_from_the_network(site):
    offenders = []
    for path in site.rglob("*"):
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            offenders += [f"{path.relative_to(site)}: {m.group(0)}" for m in _FETCH.finditer(text)]
    assert not offenders, "pages load remote resources:\n" + "\n".join(offenders[:20])
    assert (site / "search" / "search_index.js").is_file()  # the offline plugin inlined the search index


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check is live: the same config with one broken link does not build."""
    pytest.importorskip("mkdocs")
    import yaml

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nSee [nowhere](missing.md).\n", encoding="utf-8")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    minimal = {k: config[k] for k in ("site_name", "strict", "validation", "markdown_extensions")}
    minimal["docs_dir"] = str(docs)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(minimal), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode != 0 and "missing.md" in proc.stdout + proc.stderr


def test_readme_is_a_short_front_page_into_the_site():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme and ". .venv/bin/activate" in readme
    assert len(readme.splitlines()) <= 90, "the README is a front page (about two screens); details go in docs/"
    targets = re.findall(r"\]\(((?:docs|notebooks)/[^)#]+)", readme)
    assert "docs/getting-started.md" in targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_getting_started_says_how_to_reach_the_command():
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text and ". .venv/bin/activate" in text
    assert "command not found" in text
