"""`dftlens patch`: Dumas et al.'s activation patching on word-translation prompts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dftlens.analysis.patch_config import PatchConfig
from dftlens.models.loading import LoadSettings

from .common import app, console, user_errors
from .config_options import RunSettings, config_options
from .options import BACKEND, MODEL


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
    settings: RunSettings = None,
) -> None:
    """Patch source latents into target translation prompts at every layer (concept and mean-latent)."""
    from dftlens import load_model
    from dftlens.analysis.patch_config import check_words
    from dftlens.analysis.patching import OUTPUTS, check_config, run_patching
    from dftlens.config_files import RUN_CONFIG
    from dftlens.io import prepare_output_dir

    options = load.load_kwargs()
    check_config(cfg, n_layers=10**9)  # pairs now; layers again once the model is known
    out = out or Path("runs") / f"patch-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)  # fail before an expensive run, not after
    from dftlens.data.parallel import load_words

    check_words(load_words(cfg.words, cfg.languages()))  # a bad file, missing language or too few words: now
    lm = load_model(model, backend=backend, **options)
    result = run_patching(lm, cfg)
    settings.values["out"] = str(out)
    result.save(out, overwrite=overwrite, extra=settings.save)  # run_config.yaml swaps in with the results
    table = result.table
    cols = ["experiment", "layer", "n_pairs"] + [c for c in ("p_src_concept", "p_src_concept_src_lang",
                                                             "p_tgt_concept", "acc_patched", "acc_unpatched")
                                                 if c in table.columns]  # no mean-latent columns without it
    console.print(table[cols].round(3).to_string(index=False))
    causal = result.causal
    from dftlens.analysis.evidence_kinds import causal_line

    console.print("\n" + causal_line(causal), highlight=False)
    console.print(f"Wrote {out}/patching.csv, patching_items.csv, report.html, {RUN_CONFIG}")
