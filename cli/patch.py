"""`dftlens patch`: Dumas et al.'s activation patching on word-translation prompts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from .common import app, console, user_errors


def _pair(text: str) -> tuple[str, str]:
    from dftlens.data.languages import parse_pairs

    return parse_pairs([text.strip()], what="translation pair")[0]


def _experiments(text: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    from dftlens.data.languages import split_list
    from dftlens.errors import DataError

    experiments = []
    for part in split_list(text):
        source, sep, target = part.partition(">")
        if not sep:
            raise DataError(f"--pairs entry {part!r} is not source>target (e.g. de:ru>fr:zh).")
        experiments.append((_pair(source), _pair(target)))
    return experiments


def _layers(text: Optional[str]) -> Optional[list[int]]:
    from dftlens.data.languages import split_list
    from dftlens.errors import DataError

    if not text:
        return None
    layers = []
    for part in split_list(text):
        first, _, last = part.partition("-")
        try:
            layers.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise DataError(f"--layers entry {part!r} is not a layer or a range (e.g. 0,4-8).") from None
    return layers


@app.command()
@user_errors
def patch(
    model: str = typer.Option("gemma3-270m", help="Alias, Hugging Face id, local directory or .gguf file."),
    pairs: str = typer.Option("de:ru>fr:zh", help="Concept patching: source X:Y > target X':Y', comma-separated."),
    mean_sources: str = typer.Option("de:ja,ru:es,es:ru,ja:de",
                                     help="Mean-latent patching: the source pairs whose latents are averaged."),
    mean_target: str = typer.Option("fr:zh", help="Mean-latent patching target X':Y' ('none' to skip)."),
    words: Optional[Path] = typer.Option(None, help="Parallel word file (JSONL/CSV); default: bundled."),
    layers: Optional[str] = typer.Option(None, help="Layers to patch, e.g. 0,4-8 (default: all)."),
    n_pairs: int = typer.Option(32, help="Concept pairs (A, B) per experiment."),
    batch_size: int = typer.Option(72, help="Prompt rows (pairs x layers) per forward pass."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    seed: int = typer.Option(0, help="Seed for demonstrations and pair sampling."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/patch-<model>-<time>)."),
    overwrite: bool = typer.Option(False, help="Replace results already in --out."),
) -> None:
    """Patch source latents into target translation prompts at every layer (concept and mean-latent)."""
    from dftlens import load_model
    from dftlens.analysis.patching import OUTPUTS, PatchConfig, check_config, run_patching
    from dftlens.data.languages import parse_pairs
    from dftlens.io import prepare_output_dir

    config = PatchConfig(
        concept=_experiments(pairs), mean_sources=parse_pairs(mean_sources, what="mean-latent source pair"),
        mean_target=None if mean_target.strip().lower() == "none" else _pair(mean_target),
        words=str(words) if words else None, layers=_layers(layers), n_pairs=n_pairs,
        rows_per_pass=batch_size, seed=seed,
    )
    check_config(config, n_layers=10**9)  # pairs now; layers again once the model is known
    out = out or Path("runs") / f"patch-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, OUTPUTS, overwrite)  # fail before an expensive run, not after
    lm = load_model(model, backend=backend)
    result = run_patching(lm, config)
    result.save(out, overwrite=True)
    table = result.table
    cols = ["experiment", "layer", "n_pairs"] + [c for c in ("p_src_concept", "p_src_concept_src_lang",
                                                             "p_tgt_concept", "acc_patched", "acc_unpatched")]
    console.print(table[cols].round(3).to_string(index=False))
    causal = result.causal
    console.print(f"\nconcept transfers at layers {causal.get('concept_transfer_layers')}, "
                  f"output language fixed at layer {causal.get('output_language_layer')}")
    console.print(f"Wrote {out}/patching.csv, patching_items.csv, report.html")
