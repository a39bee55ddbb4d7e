"""`dftlens compare`: the probe's measurements on several checkpoints, on one figure.

Runs the same prompts, the same sentences and the same seed through each model
(loaded one at a time, so two 7B checkpoints never share memory), then overlays
their latent-language, entropy and probe curves with the trained LC/ET layers
marked, so the user sees what DFT changed where it supervised.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from ..errors import DataError
from ..io import write_csv
from ..output_dirs import results_dir
from ..layers import LayerChoice
from ..models import load_model
from .probe_run import ProbeConfig, ProbeResult, run_probe

OUTPUTS = ["compare_lens.csv", "compare_probes.csv", "compare.html", "figures"]


@dataclass
class CompareResult:
    """What :func:`compare_models` measured: one :class:`ProbeResult` per checkpoint, and the LC/ET layers.

    Fields: ``results`` (label -> probe result, in the order given), ``choice`` (the LC/ET
    layers that training supervised, None if unknown: the first model's own choice is used).
    """

    results: dict[str, ProbeResult]  # label -> probe result, in the order given
    choice: LayerChoice | None  # the layers that training supervised, if known

    @property
    def lens(self) -> pd.DataFrame:
        """Every model's per-layer lens summary, stacked, with a ``model`` column (its label)."""
        return pd.concat([r.lens.assign(model=label) for label, r in self.results.items()], ignore_index=True)

    @property
    def probes(self) -> pd.DataFrame:
        """Every model's probe table, stacked, with a ``model`` column; empty when no model ran probes."""
        frames = [r.probes.assign(model=label) for label, r in self.results.items() if not r.probes.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def at_layers(self) -> pd.DataFrame:
        """Per model: P(en), P(target) and entropy at the LC and ET layers (translation prompts)."""
        choice = self.choice or next(iter(self.results.values())).choice
        rows = []
        for label, result in self.results.items():
            lens = result.lens[result.lens["task"] == "translation"]
            if "subset" in lens.columns:
                lens = lens[lens["subset"] == "all"]
            for name, layer in (("LC", choice.lc_layer), ("ET", choice.et_layer), ("last", result.n_layers - 1)):
                at = lens[lens["layer"] == layer]
                rows.append({"model": label, "layer": f"{name} ({layer})", "p_en": at["p_en"].mean(),
                             "p_target": at["p_target"].mean(), "entropy_bits": at["entropy_bits"].mean()})
        return pd.DataFrame(rows).round(4)

    def figures(self) -> list[tuple[str, str, "go.Figure"]]:
        """compare.html's figures as (key, heading, figure): the overlaid latent-language curves
        (all items, and items answered correctly where every model has some) and each model's probes.

        Keys are the exported file stems and name the models: ``latent_<label>-vs-<label>``,
        ``latent_correct_...``, ``probes_<label>`` (labels with anything but letters, digits and
        ``.`` turned into ``-``)."""
        from ..viz.figures import compare_latent_figure, probe_figure

        choice = (self.choice or next(iter(self.results.values())).choice).to_dict()
        lens = {label: r.lens for label, r in self.results.items()}
        figures = [("latent", "Latent language, all models", compare_latent_figure(lens, choice=choice))]
        if all("subset" in df.columns and (df["subset"] == "correct").any() for df in lens.values()):
            figures.append(("latent_correct", "Latent language, items answered correctly", compare_latent_figure(
                lens, choice=choice, subset="correct")))
        # Each probe figure is titled and named by its own model (the layers' choice may name another:
        # the model that was probed before training), so an exported file says what it shows.
        figures += [(f"probes_{_slug(label)}", f"Linear probes: {label}",
                     probe_figure(r.probes, choice=choice, title=f"Linear probes per layer — {label}"
                                  + (f" (LC/ET layers of {choice['model']})" if choice.get("model") else "")))
                    for label, r in self.results.items() if not r.probes.empty]
        probes = {label: r.probes for label, r in self.results.items() if not r.probes.empty}
        if len(probes) > 1:
            from ..viz.probe_figures import compare_probe_figure

            figures.insert(len(figures) - len(probes), ("probes", "Linear probes, all models",
                                                         compare_probe_figure(probes, choice=choice)))
        names = "-vs-".join(_slug(label) for label in self.results)
        return [(f"{key}_{names}" if key in ("latent", "latent_correct", "probes") else key, heading, fig)
                for key, heading, fig in figures]

    def save(self, out: str | Path, overwrite: bool = False, figure_formats: list[str] | str | None = None,
             extra: Callable[[Path], object] | None = None) -> Path:
        """Write compare_lens.csv, compare_probes.csv and compare.html; with ``figure_formats``
        (png/svg/pdf) also each figure as ``out/figures/<key>.<format>``."""
        from ..viz.export import parse_formats, save_figures
        from ..viz.report import write_report

        formats = parse_formats(figure_formats)
        with results_dir(out, OUTPUTS, overwrite, extra=extra) as tmp:  # every file at once, or none
            write_csv(tmp / "compare_lens.csv", self.lens)
            write_csv(tmp / "compare_probes.csv", self.probes)
            choice = (self.choice or next(iter(self.results.values())).choice).to_dict()
            figures = self.figures()
            # The page names the models compared; the layers' own model is said as the source of LC/ET.
            models = " vs ".join(self.results)
            choice["model"] = f"{models} (LC/ET layers of {choice['model']})" if choice.get("model") else models
            write_report(tmp / "compare.html", None, None, choice, title="dftlens compare: " +
                         " vs ".join(self.results), summary_df=self.at_layers(),
                         figures=[(heading, fig) for _, heading, fig in figures])
            if formats:
                save_figures({key: fig for key, _, fig in figures}, tmp / "figures", formats)
        return Path(out).expanduser()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-") or "model"


def model_labels(models: list[str], labels: list[str] | None = None) -> list[str]:
    """One unique label per model: ``labels`` as given, else derived from each path.

    A local path is labelled by its last component ("final"); when two models would share
    a label, more of their paths is used ("tft/final", "dft/final"). An alias or hub id is
    its own label. Raises DataError when labels given are repeated or no path suffix tells
    the models apart (the message names ``--label``)."""
    if labels:
        if len(labels) != len(models):
            raise DataError(f"Got {len(labels)} labels for {len(models)} models; give one per model (--label).")
        repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
        if repeated:
            raise DataError(f"--label {', '.join(map(repr, repeated))} is given twice; each model needs its own label.")
        return list(labels)
    parts = [Path(m).resolve().parts if Path(m).exists() else (m,) for m in models]
    depth = 1
    while True:
        out = ["/".join(p[-depth:]) for p in parts]
        if len(set(out)) == len(out):
            return out
        if depth >= max(len(p) for p in parts):
            dup = sorted({lab for lab in out if out.count(lab) > 1})
            raise DataError(f"Models {', '.join(map(repr, dup))} are given more than once; compare each model once, "
                            "or tell them apart with one --label per --model.")
        depth += 1


def compare_models(models: list[str], config: ProbeConfig, labels: list[str] | None = None,
                   layers: str | Path | None = None, backend: str = "transformer_lens",
                   progress: bool = True, load_options: dict | None = None) -> CompareResult:
    """Probe each of ``models`` (loaded one at a time with ``load_model(name, backend, **load_options)``)."""
    labels = model_labels(models, labels)
    choice = LayerChoice.load(layers) if layers else None
    if choice is not None:  # mark the trained layers; don't let each model re-pick its own
        config = replace(config, lc_layer=choice.lc_layer, et_layer=choice.et_layer)
    config.load_data()  # a bad file or a missing language fails before the first model loads
    from ..models import resolve

    for name in models:  # an unavailable second model fails now, not after the first one ran
        resolve(name)
    results = {}
    for label, name in zip(labels, models):
        lm = load_model(name, backend=backend, **(load_options or {}))
        if choice is not None:
            choice.bind(lm)
        result = run_probe(lm, config, progress=progress)
        if choice is not None:  # the recorded sites too (e.g. resid_mid), not only the layer numbers
            result.choice = result.choice.with_layers(lc_site=choice.lc_site, et_site=choice.et_site)
        results[label] = result
        del lm
        gc.collect()
    return CompareResult(results, choice)
