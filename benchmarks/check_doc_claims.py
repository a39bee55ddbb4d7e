"""Re-measure the embedded-model numbers the docs quote, and check the docs still quote them.

Every number the documentation states about the embedded Gemma-3-270M that a change of
code can move is listed in ``CLAIMS``: the page, the exact sentence the page contains, the
command the page names, and a check of a fresh measurement against the stated values. The
script fails (exit 1) when a page no longer contains its sentence (update the claim with the
page) or a measurement no longer supports it (update the page with the new number). Only the
embedded model's cache is needed; no download. About 3 minutes on 2 CPU cores.

Usage: python benchmarks/check_doc_claims.py [--only lens|bf16]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
JA_PROMPT = 'Français: "eau" - 日本語: "'


@dataclass
class Claim:
    """One quoted number: where it is written, what the page says, and the check of a measurement."""

    page: str  # under docs/
    text: str  # a substring of the page (line breaks and runs of spaces count as one space)
    group: str  # which measurement it needs: "lens" or "bf16"
    check: Callable[[dict], tuple[bool, str]]  # measurements -> (holds, what was observed)


def _word(token: str) -> str:
    return token.replace("▁", "").strip().lower()


def _eau_word(m: dict) -> tuple[bool, str]:
    t = m["eau_word"]
    tops = [_word(x) for x in t["top_token"]]
    last = t.iloc[-1]
    ok = all(w == "water" for w in tops[13:17]) and tops[17] == "水" and abs(last["p_target"] - 0.97) <= 0.02
    return ok, f"top tokens layers 13-17: {tops[13:18]}; p_target(17) = {last['p_target']:.3f}"


def _ja_zero_shot(m: dict) -> tuple[bool, str]:
    last = m["ja_prompt"].iloc[-1]
    ok = (_word(last["top_token"]) == "water" and abs(last["p_en"] - 0.224) <= 0.005
          and abs(last["p_target"] - 0.215) <= 0.005 and last["p_en"] > last["p_target"])
    return ok, f"layer 17: top {last['top_token']!r}, p_en {last['p_en']:.3f}, p_target {last['p_target']:.3f}"


def _bf16(m: dict) -> tuple[bool, str]:
    d_en, d_tgt = m["bf16_en"], m["bf16_target"]
    ok = d_en <= 0.005 and d_tgt <= 0.005 and abs(d_en - 0.0013) <= 0.001 and abs(d_tgt - 0.0036) <= 0.0015
    return ok, f"max |bf16 - float32|: P(en) {d_en:.4f}, P(target) {d_tgt:.4f}"


CLAIMS = [
    Claim("verbs/lens.md", "the middle layers (13-16) decode \"water\" and the last layer (17) says \"水\" (0.97)",
          "lens", _eau_word),
    Claim("verbs/lens.md", "(P(en) 0.224, P(target) 0.215", "lens", _ja_zero_shot),
    Claim("scale.md", "differ by at most 0.0013 in P(en) and 0.0036 in P(target)", "bf16", _bf16),
]


def measure(groups: set[str], lm=None) -> dict:
    """The measurements the claims read (the same functions `dftlens lens` and `dftlens probe` run);
    ``lm``: the embedded model in float32, if already loaded."""
    import pandas as pd

    from dftlens import load_model
    from dftlens.analysis.lens import LensTableConfig, lens_table
    from dftlens.analysis.probe_run import ProbeConfig, run_probe

    out: dict = {}
    lm = lm or load_model("gemma3-270m")
    if "lens" in groups:
        cfg = LensTableConfig(word="eau")  # = dftlens lens --word eau
        out["eau_word"] = lens_table(lm, cfg.text(), answers=cfg.answers())
        out["ja_prompt"] = lens_table(lm, JA_PROMPT, answers={"en": "water", "target": "水"})
    if "bf16" in groups:
        config = ProbeConfig(pairs=[("fr", "zh")], max_items=12, run_probes=False)  # probe --pairs fr:zh --max-items 12 --no-probes
        curves = []
        for model in (lm, load_model("gemma3-270m", dtype="bfloat16")):
            lens = run_probe(model, config, progress=False).lens
            curves.append(lens[lens["subset"] == "all"].set_index(["task", "input_lang", "target_lang", "layer"]))
        diff = (curves[0][["p_en", "p_target"]] - curves[1][["p_en", "p_target"]]).abs()
        assert isinstance(diff, pd.DataFrame) and len(diff) and not diff.isna().any().any()
        out["bf16_en"], out["bf16_target"] = float(diff["p_en"].max()), float(diff["p_target"].max())
    return out


def main(argv: list[str] | None = None) -> int:
    """Check the pages' sentences, measure, check the numbers; print one line per claim."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("lens", "bf16"), help="Check one group of claims.")
    args = parser.parse_args(argv)
    claims = [c for c in CLAIMS if args.only in (None, c.group)]
    measured = measure({c.group for c in claims})
    failed = 0
    for claim in claims:
        quoted = " ".join(claim.text.split()) in " ".join((ROOT / "docs" / claim.page).read_text(encoding="utf-8").split())
        ok, observed = claim.check(measured)
        print(f"{'ok  ' if ok and quoted else 'FAIL'} docs/{claim.page}: {claim.text!r}"
              f"{'' if quoted else ' (no longer on the page)'}\n     measured: {observed}")
        failed += not (ok and quoted)
    print(f"{len(claims) - failed} of {len(claims)} claims hold")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
