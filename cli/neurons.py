"""`dftlens neurons` (language-specific neurons, Tang et al. 2024) and `dftlens steer` (language steering)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from dftlens.analysis.neuron_config import NeuronsConfig, SteerConfig
from dftlens.models.load_settings import LoadSettings

from .common import app, console, user_errors
from .config_options import RunSettings, config_options
from .options import BACKEND, MODEL


def _check_languages(path, langs: list[str], kind: str) -> None:
    """A language the data lacks fails before the model loads."""
    from dftlens.data.parallel import load_sentences, load_words

    (load_sentences if kind == "sentences" else load_words)(path, langs)


@app.command()
@user_errors
@config_options(NeuronsConfig, LoadSettings)
def neurons(
    cfg: NeuronsConfig,
    load: LoadSettings,
    model: str = MODEL,
    backend: str = BACKEND,
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/neurons-<model>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    settings: RunSettings = None,
) -> None:
    """Find language-specific neurons (LAPE) and measure what deactivating them does."""
    from dftlens import load_model
    from dftlens.analysis.neurons import OUTPUTS, load_split, run_neurons
    from dftlens.config_files import RUN_CONFIG
    from dftlens.output_dirs import prepare_output_dir

    options = load.load_kwargs()
    load_split(cfg)  # bad settings or a language the sentences lack fail before the model loads
    out = out or Path("runs") / f"neurons-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)
    lm = load_model(model, backend=backend, **options)
    result = run_neurons(lm, cfg)
    settings.values["out"] = str(out)
    result.save(out, overwrite=overwrite, extra=settings.save)
    table = result.counts.pivot(index="layer", columns="language", values="count")[cfg.langs]
    console.print(table.to_string())
    if result.deactivation is not None:
        d = result.deactivation
        for kind, label in (("language", "language neurons zeroed"), ("random", "random neurons zeroed (control)")):
            grid = d[d["control"] == kind].pivot(index="deactivated", columns="language", values="ppl_ratio")
            console.print(f"\nperplexity ratio, {label} (rows) x evaluated language (columns):\n"
                          + grid.round(3).to_string())
    console.print({k: v for k, v in result.summary.items() if k not in ("kind", "method")})
    console.print(f"Wrote {out}/neurons.csv, neuron_counts.csv, deactivation.csv, neuron_stats.npz, report.html, "
                  f"{RUN_CONFIG}")


@app.command()
@user_errors
@config_options(SteerConfig, LoadSettings)
def steer(
    cfg: SteerConfig,
    load: LoadSettings,
    model: str = MODEL,
    backend: str = BACKEND,
    neurons_dir: Optional[Path] = typer.Option(None, "--neurons", help="--method neurons: a `dftlens neurons` "
                                                                        "output directory (default: computed here)."),
    out: Optional[Path] = typer.Option(None, help="Output directory (default: runs/steer-<model>-<time>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace results already in --out."),
    settings: RunSettings = None,
) -> None:
    """Steer word-translation answers into another language, layer by layer (vector or neurons)."""
    from dftlens import load_model
    from dftlens.analysis.steering import OUTPUTS, run_steering
    from dftlens.config_files import RUN_CONFIG
    from dftlens.output_dirs import prepare_output_dir
    from dftlens.layers import model_n_layers

    options = load.load_kwargs()
    cfg.check(model_n_layers(model))  # from config.json, without the weights
    _check_languages(cfg.words, cfg.languages(), "words")
    _check_languages(cfg.sentences, [cfg.source[1], cfg.target], "sentences")
    if neurons_dir is not None:
        from dftlens.analysis.neurons import read_neuron_sets

        read_neuron_sets(neurons_dir)
    out = out or Path("runs") / f"steer-{Path(model).name}-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(out, [*OUTPUTS, RUN_CONFIG], overwrite)
    lm = load_model(model, backend=backend, **options)
    result = run_steering(lm, cfg, neurons=neurons_dir)
    settings.values["out"] = str(out)
    result.save(out, overwrite=overwrite, extra=settings.save)
    cols = ["layer", "strength", "n_items", "switched", "switched_lo", "switched_hi", "kept", "p_new", "p_old"]
    console.print(result.table[cols].round(3).to_string(index=False))
    console.print(result.summary)
    console.print(f"Wrote {out}/steering.csv, steering_items.csv, report.html, {RUN_CONFIG}")
