"""`dftlens patch`: Dumas et al.'s activation patching on word-translation prompts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dftlens.analysis.patch_config import PatchConfig
from dftlens.models.load_settings import LoadSettings

from .common import app, console, user_errors
from .config_options import RunSettings, config_options
from .options import BACKEND, FIGURE_FORMAT, MODEL


# Terminal columns of each experiment: (patching.csv column, short header); every row fits 80 columns.
_SHORT = {"concept": (("p_src_concept", "P(A,Y')"), ("p_src_concept_src_lang", "P(A,Y)"),
                      ("p_tgt_concept", "P(B,Y')"), ("p_tgt_concept_src_lang", "P(B,Y)")),
          "mean_latent": (("acc_patched", "acc"), ("acc_unpatched", "acc unpatched"),
                          ("p_src_concept", "P(A,Y')"), ("p_tgt_concept", "P(B,Y')"))}


def summary_lines(table) -> list[str]:
    """patching.csv as short text blocks, one per experiment, no line over 80 columns.

    A heading (experiment, source into target, pairs) then one row per layer with the
    experiment's own probabilities (A, B: the source and target concepts; Y, Y': the source
    and target output languages); columns the run did not measure are left out.
    """
    lines = []
    for (exp, src, tgt), frame in table.groupby(["experiment", "source", "target"], sort=False):
        cols = [(c, h) for c, h in _SHORT.get(exp, ()) if c in frame and frame[c].notna().any()]
        shown = frame[["layer", *[c for c, _ in cols]]].rename(columns=dict(cols))
        n = int(frame["n_pairs"].iloc[0])
        lines += ["", f"{exp.replace('_', '-')} patching: {src} into {tgt} (n = {n} pairs)",
                  shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    return lines[1:]


@app.command()
@user_errors
@config_options(PatchConfig, LoadSettings)
def patch(
    cfg: PatchConfig,
    load: LoadSettings,
    model: str = MODEL,
    backend: str = BACKEND,
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/patch-<model>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    figure_format: Optional[str] = FIGURE_FORMAT,
    settings: RunSettings = None,
) -> None:
    """Patch source latents into target translation prompts at every layer (concept and mean-latent)."""
    from dftlens import load_model
    from dftlens.analysis.patch_config import check_words
    from dftlens.analysis.patch_config import check_config
    from dftlens.analysis.patch_result import OUTPUTS
    from dftlens.analysis.patching import run_patching
    from dftlens.config_files import RUN_CONFIG
    from dftlens.output_dirs import prepare_output_dir
    from dftlens.layers import model_n_layers
    from dftlens.viz.export import parse_formats

    options = load.load_kwargs()
    formats = parse_formats(figure_format)
    # The block count from config.json (no weights); unknown (None): layers are checked again after loading.
    check_config(cfg, n_layers=model_n_layers(model) or 10**9)
    out = out or Path("runs") / f"patch-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)  # fail before an expensive run, not after
    from dftlens.data.parallel import load_words

    check_words(load_words(cfg.words, cfg.languages()))  # a bad file, missing language or too few words: now
    lm = load_model(model, backend=backend, **options)
    result = run_patching(lm, cfg)
    settings.values["out"] = str(out)
    # run_config.yaml swaps in with the results
    result.save(out, overwrite=overwrite, extra=settings.save, figure_formats=formats)
    for line in summary_lines(result.table):
        console.print(line, soft_wrap=True)
    causal = result.causal
    from dftlens.analysis.evidence_kinds import causal_line

    console.print("\n" + causal_line(causal), highlight=False)
    console.print(f"Wrote {out}/patching.csv, patching_items.csv, report.html, {RUN_CONFIG}"
                  + (f", figures/*.{{{','.join(formats)}}}" if formats else ""))
