"""`dftlens compare`: probe two or more checkpoints and overlay their curves."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dftlens.analysis.probe_run import ProbeConfig
from dftlens.models.load_settings import LENS_DTYPE_HELP, LoadSettings

from .common import app, console, user_errors
from .config_options import RunSettings, config_options
from .options import BACKEND, FIGURE_FORMAT, LENS_CHUNK


@app.command()
@user_errors
@config_options(ProbeConfig, LoadSettings, exclude=("lc_layer", "et_layer", "causal_pairs"),
                defaults={"pairs": [("fr", "zh"), ("de", "ja")], "tasks": ["translation"], "max_items": 40},
                helps={"pairs": "Translation pairs input:target.", "run_probes": "Also compare the linear probes.",
                       "seed": "Seed for demonstrations and probe splits (the same for every model).",
                       "dtype": LENS_DTYPE_HELP})
def compare(
    cfg: ProbeConfig,
    load: LoadSettings,
    model: List[str] = typer.Option(..., help="Two or more models/checkpoints (comma-separated or repeated)."),
    label: Optional[List[str]] = typer.Option(None, help="A short label per model, same order (comma-separated "
                                              "or repeated: base,dft4)."),
    layers: Optional[Path] = typer.Option(None, help="layers.json of the training run, to mark LC/ET."),
    backend: str = BACKEND,
    lens_chunk: Optional[int] = LENS_CHUNK,
    out: Path = typer.Option(Path("runs/compare"), help="Output directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    figure_format: Optional[str] = FIGURE_FORMAT,
    settings: RunSettings = None,
) -> None:
    """Run the probe's measurements on several checkpoints and plot them on one figure."""
    from dftlens.analysis.compare import OUTPUTS, compare_models, model_labels
    from dftlens.config_files import RUN_CONFIG
    from dftlens.errors import DftlensError
    from dftlens.output_dirs import prepare_output_dir
    from dftlens.viz.export import parse_formats

    from dftlens.data.languages import split_list

    model = split_list(model, keep_repeats=True)  # the one list syntax: --model a,b or --model a --model b
    # Labels keep repeats, so a repeated label is refused as one rather than miscounted.
    label = [part.strip() for entry in label or [] for part in entry.split(",") if part.strip()]
    if len(model) < 2:
        raise DftlensError("compare needs at least two --model options.")
    if label and len(label) != len(model):
        raise DftlensError(f"Got {len(label)} --label for {len(model)} --model; give one per model or none.")
    options = {**load.load_kwargs(), **({"lens_chunk": lens_chunk} if lens_chunk is not None else {})}
    model_labels(list(model), list(label) if label else None)  # unique labels, checked before any work
    formats = parse_formats(figure_format)
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)
    result = compare_models(list(model), cfg, labels=list(label) if label else None, layers=layers,
                            backend=backend, load_options=options)
    result.save(out, overwrite=True, figure_formats=formats, extra=settings.save)  # run_config.yaml swaps in too
    console.print(result.at_layers().to_string(index=False))
    console.print(f"Wrote {out}/compare.html, compare_lens.csv, compare_probes.csv, {RUN_CONFIG}")
