"""`dftlens compare`: the probe's measurements on several checkpoints, on one figure.

Runs the same prompts, the same sentences and the same seed through each model
(loaded one at a time, so two 7B checkpoints never share memory), then overlays
their latent-language, entropy and probe curves with the trained LC/ET layers
marked, so the user sees what DFT changed where it supervised.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..io import output_dir, write_csv
from ..layers import LayerChoice
from ..models import load_model
from .run import ProbeConfig, ProbeResult, run_probe

OUTPUTS = ["compare_lens.csv", "compare_probes.csv", "compare.html"]


@dataclass
class CompareResult:
    results: dict[str, ProbeResult]  # label -> probe result, in the order given
    choice: LayerChoice | None  # the layers that training supervised, if known

    @property
    def lens(self) -> pd.DataFrame:
        return pd.concat([r.lens.assign(model=label) for label, r in self.results.items()], ignore_index=True)

    @property
    def probes(self) -> pd.DataFrame:
        frames = [r.probes.assign(model=label) for label, r in self.results.items() if not r.probes.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def at_layers(self) -> pd.DataFrame:
        """Per model: P(en), P(target) and entropy at the LC and ET layers (translation prompts)."""
        choice = self.choice or next(iter(self.results.values())).choice
        rows = []
        for label, result in self.results.items():
            lens = result.lens[result.lens["task"] == "translation"]
            for name, layer in (("LC", choice.lc_layer), ("ET", choice.et_layer), ("last", result.n_layers - 1)):
                at = lens[lens["layer"] == layer]
                rows.append({"model": label, "layer": f"{name} ({layer})", "p_en": at["p_en"].mean(),
                             "p_target": at["p_target"].mean(), "entropy_bits": at["entropy_bits"].mean()})
        return pd.DataFrame(rows).round(4)

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        from ..viz.figures import compare_latent_figure, probe_figure
        from ..viz.report import write_report

        with output_dir(out, OUTPUTS, overwrite) as tmp:  # every file appears at once, or none
            write_csv(tmp / "compare_lens.csv", self.lens)
            write_csv(tmp / "compare_probes.csv", self.probes)
            choice = (self.choice or next(iter(self.results.values())).choice).to_dict()
            figures = [("Latent language, all models", compare_latent_figure(
                {label: r.lens for label, r in self.results.items()}, choice=choice))]
            figures += [(f"Linear probes: {label}", probe_figure(r.probes, choice=choice))
                        for label, r in self.results.items() if not r.probes.empty]
            write_report(tmp / "compare.html", None, None, choice, title="dftlens compare: " +
                         " vs ".join(self.results), summary_df=self.at_layers(), figures=figures)
        return Path(out).expanduser()


def compare_models(models: list[str], config: ProbeConfig, labels: list[str] | None = None,
                   layers: str | Path | None = None, backend: str = "transformer_lens",
                   progress: bool = True, load_options: dict | None = None) -> CompareResult:
    """Probe each of ``models`` (loaded one at a time with ``load_model(name, backend, **load_options)``)."""
    labels = labels or [Path(m).name if Path(m).exists() else m for m in models]
    choice = LayerChoice.load(layers) if layers else None
    if choice is not None:  # mark the trained layers; don't let each model re-pick its own
        config = replace(config, lc_layer=choice.lc_layer, et_layer=choice.et_layer)
    results = {}
    for label, name in zip(labels, models):
        lm = load_model(name, backend=backend, **(load_options or {}))
        if choice is not None:
            choice.check_model(lm.n_layers, name)
        results[label] = run_probe(lm, config, progress=progress)
        del lm
        gc.collect()
    return CompareResult(results, choice)
