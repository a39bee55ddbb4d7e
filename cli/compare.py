"""`dftlens compare`: probe two or more checkpoints and overlay their curves."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import app, console, user_errors
from .options import DEVICE, DEVICE_MAP, DTYPE, LENS_CHUNK, load_options


@app.command()
@user_errors
def compare(
    model: List[str] = typer.Option(..., help="Two or more models/checkpoints (repeat the option)."),
    label: Optional[List[str]] = typer.Option(None, help="A short label per model (same order)."),
    layers: Optional[Path] = typer.Option(None, help="layers.json of the training run, to mark LC/ET."),
    pairs: str = typer.Option("fr:zh,de:ja", help="Translation pairs input:target."),
    tasks: str = typer.Option("translation", help="Which of Wendler's tasks to run."),
    max_items: int = typer.Option(40, help="Prompts per task and pair (0 = all)."),
    probes: bool = typer.Option(True, help="Also compare the linear probes."),
    max_sentences: int = typer.Option(60, help="Parallel sentences for the probes (0 = all)."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    seed: int = typer.Option(0, help="Seed for demonstrations and probe splits (the same for every model)."),
    device: Optional[str] = DEVICE,
    dtype: str = DTYPE,
    device_map: Optional[str] = DEVICE_MAP,
    lens_chunk: Optional[int] = LENS_CHUNK,
    out: Path = typer.Option(Path("runs/compare"), help="Output directory."),
    overwrite: bool = typer.Option(False, help="Replace results already in --out."),
    figure_format: Optional[str] = typer.Option(
        None, help="Also save the figures as --out/figures/<name>.<fmt>: png, svg, pdf (comma-separated)."),
) -> None:
    """Run the probe's measurements on several checkpoints and plot them on one figure."""
    from dftlens.analysis.compare import OUTPUTS, compare_models, model_labels
    from dftlens.analysis.run import ProbeConfig
    from dftlens.data.languages import parse_pairs, split_list
    from dftlens.errors import DftlensError
    from dftlens.io import prepare_output_dir
    from dftlens.viz.export import parse_formats

    if len(model) < 2:
        raise DftlensError("compare needs at least two --model options.")
    if label and len(label) != len(model):
        raise DftlensError(f"Got {len(label)} --label for {len(model)} --model; give one per model or none.")
    load = load_options(device, dtype, device_map, lens_chunk)
    model_labels(list(model), list(label) if label else None)  # unique labels, checked before any work
    formats = parse_formats(figure_format)
    prepare_output_dir(out, OUTPUTS, overwrite)
    config = ProbeConfig(pairs=parse_pairs(pairs, what="--pairs entry"), tasks=split_list(tasks) or None, max_items=max_items or None,
                         run_probes=probes, max_sentences=max_sentences or None, seed=seed)
    result = compare_models(list(model), config, labels=list(label) if label else None, layers=layers,
                            backend=backend, load_options=load)
    result.save(out, overwrite=True, figure_formats=formats)
    console.print(result.at_layers().to_string(index=False))
    console.print(f"Wrote {out}/compare.html, compare_lens.csv, compare_probes.csv")
