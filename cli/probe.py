"""`dftlens probe`: find the LC and ET layers and write layers.json with its evidence."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from .common import app, console, user_errors
from .options import DEVICE, DEVICE_MAP, DTYPE, LENS_CHUNK, REMOTE, load_options


@app.command()
@user_errors
def probe(
    model: str = typer.Option("gemma3-270m", help="Alias, Hugging Face id, local directory or .gguf file."),
    pairs: str = typer.Option("fr:zh,de:ja,zh:fr", help="Translation pairs input:target, comma-separated."),
    tasks: str = typer.Option("translation,repetition",
                              help="Which of Wendler's tasks to run: translation, repetition, cloze (cloze is off by default; see README)."),
    mono_langs: Optional[str] = typer.Option(None, help="Languages for repetition/cloze (default: the targets)."),
    words: Optional[Path] = typer.Option(None, help="Parallel word file (JSONL/CSV); default: bundled."),
    sentences: Optional[Path] = typer.Option(None, help="Parallel sentence file or FLORES dir; default: bundled."),
    max_items: int = typer.Option(32, help="Prompts per task and pair (0 = all)."),
    probes: bool = typer.Option(True, help="Run the linear probes on parallel sentences."),
    probe_langs: str = typer.Option("en,zh,fr,de,ru,ja,es,vi,ar", help="Languages for the probes."),
    max_sentences: int = typer.Option(60, help="Parallel sentences for the probes (0 = all)."),
    lc_layer: Optional[int] = typer.Option(None, help="Override the LC layer (0-based block index)."),
    et_layer: Optional[int] = typer.Option(None, help="Override the ET layer (0-based block index)."),
    causal: bool = typer.Option(False, help="Add activation-patching evidence (dftlens patch) to layers.json."),
    causal_pairs: int = typer.Option(32, help="Concept pairs for --causal."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    batch_size: int = typer.Option(16, help="Prompts per forward pass."),
    device: Optional[str] = DEVICE,
    dtype: str = DTYPE,
    device_map: Optional[str] = DEVICE_MAP,
    lens_chunk: Optional[int] = LENS_CHUNK,
    remote: bool = REMOTE,
    seed: int = typer.Option(0, help="Seed for demonstrations and probe splits."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/probe-<model>-<time>)."),
    overwrite: bool = typer.Option(False, help="Replace results already in --out."),
    figure_format: Optional[str] = typer.Option(
        None, help="Also save every report figure as --out/figures/<name>.<fmt>: png, svg, pdf (comma-separated)."),
) -> None:
    """Run the logit lens and probes on parallel prompts and choose the LC and ET layers."""
    from dftlens import load_model
    from dftlens.analysis.run import OUTPUTS, ProbeConfig, run_probe
    from dftlens.data.languages import parse_pairs, split_list
    from dftlens.io import prepare_output_dir
    from dftlens.viz.export import parse_formats

    load = load_options(device, dtype, device_map, lens_chunk)
    formats = parse_formats(figure_format)
    if remote:
        from dftlens.errors import DftlensError

        if probes or causal:
            raise DftlensError("--remote measures the logit lens on NDIF only; add --no-probes (and drop --causal).")
        load = {"remote": True, "lens_chunk": lens_chunk}
    out = out or Path("runs") / f"probe-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, OUTPUTS, overwrite)  # fail before an expensive run, not after
    config = ProbeConfig(
        pairs=parse_pairs(pairs, what="--pairs entry"), tasks=split_list(tasks) or None,
        mono_langs=split_list(mono_langs) or None,
        words=str(words) if words else None, sentences=str(sentences) if sentences else None,
        max_items=max_items or None, run_probes=probes, probe_langs=split_list(probe_langs) or None,
        max_sentences=max_sentences or None, batch_size=batch_size, seed=seed,
        lc_layer=lc_layer, et_layer=et_layer, causal_pairs=causal_pairs if causal else 0,
    )
    config.load_data()  # a missing language or a bad file fails now, before the model loads
    from dftlens.layers import check_order, model_n_layers

    check_order(config.lc_layer, config.et_layer, model_n_layers(model))  # from config.json, without the weights
    lm = load_model(model, backend=backend, **load)
    result = run_probe(lm, config)
    result.save(out, overwrite=True, figure_formats=formats)
    console.print(result.summary().to_string(index=False))
    ev = result.choice.evidence
    console.print(
        f"\nLC layer {result.choice.lc_layer} ({ev.get('lc_decided_by')}), "
        f"ET layer {result.choice.et_layer} ({ev.get('et_decided_by')}) of {result.n_layers}; "
        f"hooks {result.choice.hooks['lc']}, {result.choice.hooks['et']}"
    )
    console.print(f"Wrote {out}/layers.json, lens.csv, lens_items.csv, probes.csv, report.html"
                  + (f", figures/*.{{{','.join(formats)}}}" if formats else ""))
