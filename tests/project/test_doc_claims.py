"""The embedded-model numbers the docs quote still hold (the quick half of
benchmarks/check_doc_claims.py; the bf16 claim needs two probe runs and stays in the script)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "check_doc_claims.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_doc_claims", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_claim_is_quoted_on_its_page():
    script = _script()
    for claim in script.CLAIMS:
        page = " ".join((script.ROOT / "docs" / claim.page).read_text(encoding="utf-8").split())
        assert " ".join(claim.text.split()) in page, f"docs/{claim.page} no longer says {claim.text!r}"


@pytest.mark.embedded
def test_lens_claims_hold_on_the_embedded_model(embedded_model):
    script = _script()
    measured = script.measure({"lens"}, lm=embedded_model)
    for claim in (c for c in script.CLAIMS if c.group == "lens"):
        ok, observed = claim.check(measured)
        assert ok, f"docs/{claim.page}: {claim.text!r} no longer holds; measured {observed}"
