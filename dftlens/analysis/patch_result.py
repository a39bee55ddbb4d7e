"""What ``dftlens patch`` measured (:class:`PatchResult`) and how it is saved, every file at once or none."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..io import write_csv
from ..output_dirs import results_dir
from .patch_config import PatchConfig

OUTPUTS = ["patching.csv", "patching_items.csv", "report.html", "figures"]


@dataclass
class PatchResult:
    """What :func:`~dftlens.analysis.patching.run_patching` measured (``dftlens patch``).

    Fields: ``model``, ``n_layers``, ``config``, ``items`` (one row per pair and layer,
    ``patching_items.csv``), ``table`` (means with 95% CIs per experiment and layer,
    ``patching.csv``), ``causal`` (the evidence :func:`~dftlens.analysis.patch_evidence.causal_evidence` read
    from ``table``).
    """

    model: str
    n_layers: int
    config: PatchConfig
    items: pd.DataFrame  # one row per pair and layer (patching_items.csv)
    table: pd.DataFrame  # means with CIs (patching.csv)
    causal: dict

    def save(self, out: str | Path, overwrite: bool = False, report: bool = True,
             extra: Callable[[Path], object] | None = None, figure_formats: list[str] | str | None = None) -> Path:
        """Write the outputs into ``out`` at once; ``run_config.yaml`` holds the config
        (``extra(tmp_dir)``, the CLI's, may replace it with every option); with
        ``figure_formats`` (png/svg/pdf) also ``out/figures/patch-<model>-<experiment>-<src>-into-<tgt>.<fmt>``."""
        from ..viz.export import parse_formats, save_figures
        from ..viz.patch_figures import patch_figures

        formats = parse_formats(figure_formats)  # refuse a bad format before writing anything
        with results_dir(out, OUTPUTS, overwrite, self.config, "patch", extra) as tmp:  # run_config.yaml, then the results
            write_csv(tmp / "patching_items.csv", self.items)
            if report:
                from ..viz.patch_figures import write_patch_report

                write_patch_report(tmp / "report.html", self.table, self.causal,
                                   title=f"dftlens patch: {self.model}", model=self.model)
            if formats:
                save_figures(patch_figures(self.table, self.model), tmp / "figures", formats)
            write_csv(tmp / "patching.csv", self.table)  # last: its presence means the run completed
        return Path(out).expanduser()
