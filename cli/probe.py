"""`dftlens probe`: find the LC and ET layers and write layers.json with its evidence."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dftlens.analysis.probe_run import ProbeConfig
from dftlens.models.load_settings import LENS_DTYPE_HELP, LoadSettings

from .common import app, console, err_console, user_errors
from .config_options import RunSettings, config_options
from .options import BACKEND, FIGURE_FORMAT, LENS_CHUNK, MODEL, REMOTE

CAUSAL_PAIRS = 32  # concept pairs --causal patches when --causal-pairs is not given


@app.command()
@user_errors
@config_options(ProbeConfig, LoadSettings, helps={"dtype": LENS_DTYPE_HELP})
def probe(
    cfg: ProbeConfig,
    load: LoadSettings,
    model: str = MODEL,
    backend: str = BACKEND,
    lens_chunk: Optional[int] = LENS_CHUNK,
    remote: bool = REMOTE,
    causal: bool = typer.Option(False, "--causal",
                                help=f"Add activation-patching evidence (dftlens patch, {CAUSAL_PAIRS} pairs unless "
                                     "--causal-pairs says) to layers.json."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/probe-<model>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    figure_format: Optional[str] = FIGURE_FORMAT,
    settings: RunSettings = None,
) -> None:
    """Run the logit lens and probes on parallel prompts and choose the LC and ET layers."""
    from dftlens import load_model
    from dftlens.analysis.probe_run import OUTPUTS, run_probe
    from dftlens.config_files import RUN_CONFIG
    from dftlens.output_dirs import prepare_output_dir
    from dftlens.viz.export import parse_formats

    if causal and "causal_pairs" not in settings.given:
        cfg.causal_pairs = settings.values["causal_pairs"] = CAUSAL_PAIRS
    options = {**load.load_kwargs(), **({"lens_chunk": lens_chunk} if lens_chunk is not None else {})}
    formats = parse_formats(figure_format)
    if remote:
        from dftlens.errors import DftlensError

        if cfg.run_probes or cfg.causal_pairs:
            raise DftlensError("--remote measures the logit lens on NDIF only; add --no-probes (and drop --causal).")
        options = {"remote": True, "lens_chunk": lens_chunk}
    out = out or Path("runs") / f"probe-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)  # fail before an expensive run, not after
    cfg.load_data()  # a missing language or a bad file fails now, before the model loads
    from dftlens.analysis.layer_choice import check_choosable
    from dftlens.layers import model_n_layers

    check_choosable(model_n_layers(model), cfg.lc_layer, cfg.et_layer)  # from config.json, without the weights
    from dftlens.models.name_resolution import check_top_k

    check_top_k(cfg.top_k, model)
    lm = load_model(model, backend=backend, **options)
    result = run_probe(lm, cfg)
    settings.values["out"] = str(out)
    result.save(out, overwrite=True, figure_formats=formats, extra=settings.save)  # run_config.yaml swaps in too
    console.print(result.summary().to_string(index=False))
    from dftlens.analysis.evidence_kinds import causal_line, choice_line, evidence_line

    console.print("\n" + choice_line(result.choice), highlight=False)
    console.print(evidence_line(result.choice), highlight=False)
    if causal_line(result.choice.evidence.causal):
        console.print(causal_line(result.choice.evidence.causal), highlight=False)
    if result.choice.warning():
        err_console.print(f"warning: {result.choice.warning()}", highlight=False)
    console.print(f"Wrote {out}/layers.json, lens.csv, lens_items.csv, probes.csv, report.html, {RUN_CONFIG}"
                  + (f", figures/*.{{{','.join(formats)}}}" if formats else ""))
