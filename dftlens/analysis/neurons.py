"""``dftlens neurons``: language-specific neurons (Tang et al., ACL 2024) and their deactivation.

Tang, Luo, Zhao, Dong, Zhao, Wei and Wen, "Language-Specific Neurons: The Key to
Multilingual Capabilities in Large Language Models" (arXiv 2402.16438; code
RUCAIBox/Language-Specific-Neurons). :func:`run_neurons`:

1. splits the parallel sentences (seeded): ``heldout`` per language for perplexities, the
   rest for the activation statistics (:func:`dftlens.analysis.lape.activation_stats`);
2. selects the language-specific neurons with their thresholds (:mod:`.lape`);
3. deactivation (their ``ppl.py``): each language's neurons are set to 0 at
   ``blocks.{l}.mlp.hook_post`` (every position) and the held-out sentences of every language
   are scored; reported per (deactivated set, evaluated language): the corpus perplexity and the
   geometric-mean ratio over sentences of patched to unpatched perplexity, with a Student-t 95%
   CI on the per-sentence log ratio. Control: per language, as many random neurons drawn from
   the same layers (the same count per layer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..data.parallel import load_sentences
from ..errors import DataError, DftlensError
from ..io import read_csv, write_csv, write_json
from ..output_dirs import results_dir
from ..models import Edit, LensModel
from ..models.hook_points import hook_name
from ..models.mlp_layout import d_mlp
from .lape import ActivationStats, Selection, activation_stats, neuron_sets, select_neurons
from .neuron_config import NeuronsConfig
from .sentence_reps import pooling_weights
from .stats import mean_ci

OUTPUTS = ["neurons.csv", "neuron_counts.csv", "deactivation.csv", "neuron_stats.npz", "summary.json",
           "report.html"]
NeuronSet = dict[int, np.ndarray]  # layer -> hidden-unit indices


def load_split(config: NeuronsConfig) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(statistics sentences, held-out sentences), each ``{lang: texts}``; DataError for a missing language."""
    config.check()
    data = load_sentences(config.sentences, config.langs)
    order = np.random.default_rng(config.seed).permutation(len(data))[:config.max_sentences or None]
    n_stats = config.split(len(order))
    stats_rows, held_rows = order[:n_stats], order[n_stats:]
    stats = {lang: [data.rows[i][lang] for i in stats_rows] for lang in config.langs}
    held = {lang: [data.rows[i][lang] for i in held_rows] for lang in config.langs}
    return stats, held


def zero_edits(neurons: NeuronSet) -> list[Edit]:
    """Edits that set the given hidden units to 0 at ``blocks.{l}.mlp.hook_post``, every position."""
    def zero(idx: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda cur: cur.index_fill(-1, idx.to(cur.device), 0.0)

    return [Edit(hook_name(layer, "mlp_post"), zero(torch.as_tensor(idx, dtype=torch.long)), positions=None)
            for layer, idx in sorted(neurons.items()) if len(idx)]


def random_like(neurons: NeuronSet, width: int, rng: np.random.Generator) -> NeuronSet:
    """As many random hidden units per layer as ``neurons`` has there (the control set)."""
    return {layer: np.sort(rng.choice(width, size=len(idx), replace=False)) for layer, idx in neurons.items()}


@torch.no_grad()
def sentence_nll(lm: LensModel, texts: list[str], edits: list[Edit], batch_size: int = 16,
                 max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence: (summed next-token NLL in nats, predicted tokens), with ``edits`` applied.

    Every real token after the first is predicted (a leading BOS is never a target).
    Raises DftlensError on non-finite log-probabilities.
    """
    last = lm.hook_name(lm.n_layers - 1)
    nll, count = np.zeros(len(texts)), np.zeros(len(texts))
    for start in range(0, len(texts), batch_size):
        batch = lm.tokenize(texts[start:start + batch_size], padding_side="right", max_length=max_length)
        resid = lm.capture(batch, [last], positions=None, edits=list(edits) or None)[last]
        mask = batch["attention_mask"]
        for row in range(len(resid)):
            n = int(mask[row].sum())
            logp = lm.log_probs(resid[row, :n - 1])  # [n - 1, V]
            target = batch["input_ids"][row, 1:n].to(logp.device)
            token_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            if not torch.isfinite(token_nll).all():
                raise DftlensError("The model gave non-finite log-probabilities on a held-out sentence; stopping.")
            nll[start + row], count[start + row] = float(token_nll.sum()), n - 1
    return nll, count


def deactivation_table(lm: LensModel, sets: dict[str, NeuronSet], held: dict[str, list[str]],
                       config: NeuronsConfig, progress: bool = True) -> pd.DataFrame:
    """Perplexities of every language's held-out sentences with each set (and its random control) zeroed."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    width = d_mlp(lm.hf_model)
    conditions = [("none", "none", {})]
    for lang, neurons in sets.items():
        conditions += [(lang, "language", neurons), (lang, "random", random_like(neurons, width, rng))]
    clean = {lang: sentence_nll(lm, texts, [], config.batch_size, config.max_length) for lang, texts in held.items()}
    rows = []
    for name, kind, neurons in tqdm(conditions, desc="deactivation", disable=not progress):
        edits = zero_edits(neurons)
        for lang, texts in held.items():
            nll, count = clean[lang] if not edits else sentence_nll(lm, texts, edits, config.batch_size,
                                                                   config.max_length)
            base_nll, _ = clean[lang]
            log_ratio = (nll - base_nll) / count  # per sentence: log(ppl_patched / ppl_clean)
            mean, lo, hi = mean_ci(log_ratio)
            rows.append(dict(deactivated=name, control=kind, n_neurons=int(sum(len(v) for v in neurons.values())),
                             language=lang, n_sentences=len(texts), ppl=float(np.exp(nll.sum() / count.sum())),
                             ppl_clean=float(np.exp(base_nll.sum() / count.sum())), ppl_ratio=float(np.exp(mean)),
                             ppl_ratio_lo=float(np.exp(lo)), ppl_ratio_hi=float(np.exp(hi))))
    return pd.DataFrame(rows)


def neuron_table(stats: ActivationStats, selection: Selection) -> pd.DataFrame:
    """``neurons.csv``: layer, neuron, languages (``;``-joined, empty when none), entropy, p_<lang>."""
    probs = stats.probs[selection.layer, selection.neuron]
    langs = np.array(stats.langs)
    frame = pd.DataFrame({
        "layer": selection.layer, "neuron": selection.neuron,
        "languages": [";".join(langs[row]) for row in selection.specific],
        "entropy": selection.entropy[selection.layer, selection.neuron],
    })
    for k, lang in enumerate(stats.langs):
        frame[f"p_{lang}"] = probs[:, k]
    return frame


def layer_counts(selection: Selection, langs: list[str], n_layers: int) -> pd.DataFrame:
    """``neuron_counts.csv``: per layer and language the number of neurons specific to it."""
    rows = [dict(layer=layer, language=lang,
                 count=int(((selection.layer == layer) & selection.specific[:, k]).sum()))
            for layer in range(n_layers) for k, lang in enumerate(langs)]
    return pd.DataFrame(rows)


def cluster_edges(per_layer: np.ndarray) -> tuple[int | None, int | None]:
    """(last layer of the bottom cluster, first layer of the top cluster) of per-layer neuron counts.

    Tang et al. find the neurons in the bottom and top layers. Bottom cluster: layers of the lower
    half from the first on whose count is at least half the lower half's peak, up to the last
    such layer; top cluster likewise in the upper half, from its first such layer. None when a
    half holds no neuron.
    """
    half = len(per_layer) // 2
    bottom, top = per_layer[:half], per_layer[half:]
    end = int(np.nonzero(bottom >= bottom.max() / 2)[0].max()) if len(bottom) and bottom.max() > 0 else None
    start = int(np.nonzero(top >= top.max() / 2)[0].min()) + half if len(top) and top.max() > 0 else None
    return end, start


def summarise(counts: pd.DataFrame, deactivation: pd.DataFrame | None, n_layers: int) -> dict:
    """Where the neurons sit and what deactivating them does: the ``summary.json`` and layer evidence."""
    per_layer = counts.groupby("layer")["count"].sum().reindex(range(n_layers), fill_value=0)
    total = int(per_layer.sum())
    quarter = max(1, n_layers // 4)
    end, start = cluster_edges(per_layer.to_numpy())
    out = {
        "kind": "language neurons",
        "method": "LAPE (Tang et al., ACL 2024)",
        "n_specific": total,
        "per_language": {k: int(v) for k, v in counts.groupby("language")["count"].sum().items()},
        "peak_layers": [int(x) for x in per_layer.sort_values(ascending=False, kind="stable").index[:3]
                        if per_layer[x] > 0],
        "share_bottom_quarter": float(per_layer.iloc[:quarter].sum() / total) if total else None,
        "share_top_quarter": float(per_layer.iloc[-quarter:].sum() / total) if total else None,
        "bottom_cluster_end": end,
        "top_cluster_start": start,
        "per_layer": [int(x) for x in per_layer],
    }
    if deactivation is not None and not deactivation.empty:
        for kind in ("language", "random"):
            part = deactivation[deactivation["control"] == kind]
            diag = part[part["deactivated"] == part["language"]]["ppl_ratio"]
            off = part[part["deactivated"] != part["language"]]["ppl_ratio"]
            out[f"{kind}_ppl_ratio_diagonal"] = float(diag.mean()) if len(diag) else None
            out[f"{kind}_ppl_ratio_off_diagonal"] = float(off.mean()) if len(off) else None
    return out


@dataclass
class NeuronsResult:
    """What :func:`run_neurons` measured (``dftlens neurons``).

    Fields: ``model``, ``n_layers``, ``config``, ``stats`` (:class:`~dftlens.analysis.lape.ActivationStats`),
    ``selection``, ``neurons`` (``neurons.csv``), ``counts`` (``neuron_counts.csv``), ``deactivation``
    (``deactivation.csv``; None with ``heldout=0``), ``summary`` (``summary.json``).
    """

    model: str
    n_layers: int
    config: NeuronsConfig
    stats: ActivationStats
    selection: Selection
    neurons: pd.DataFrame
    counts: pd.DataFrame
    deactivation: pd.DataFrame | None
    summary: dict = field(default_factory=dict)

    def sets(self) -> dict[str, NeuronSet]:
        """``{lang: {layer: neuron indices}}`` of the language-specific neurons."""
        return neuron_sets(self.selection, self.stats.langs)

    def save(self, out: str | Path, overwrite: bool = False, report: bool = True,
             extra: Callable[[Path], object] | None = None) -> Path:
        """Write :data:`OUTPUTS` and ``run_config.yaml`` (the config) into ``out`` at once.

        ``extra(tmp_dir)`` (the CLI's) may replace ``run_config.yaml`` with every option of the run.
        """
        with results_dir(out, OUTPUTS, overwrite, self.config, "neurons", extra) as tmp:  # run_config.yaml, then the results
            np.savez_compressed(tmp / "neuron_stats.npz", active=self.stats.active, tokens=self.stats.tokens,
                                post_sum=self.stats.post_sum, langs=np.array(self.stats.langs),
                                entropy=self.selection.entropy)
            write_csv(tmp / "neuron_counts.csv", self.counts)
            if self.deactivation is not None:
                write_csv(tmp / "deactivation.csv", self.deactivation)
            write_json(tmp / "summary.json", self.summary)
            if report:
                from ..viz.neuron_figures import write_neurons_report

                write_neurons_report(tmp / "report.html", self, title=f"dftlens neurons: {self.model}")
            write_csv(tmp / "neurons.csv", self.neurons)  # last: its presence means the run completed
        return Path(out).expanduser()


def run_neurons(lm: LensModel, config: NeuronsConfig | None = None, progress: bool = True) -> NeuronsResult:
    """Statistics, selection and (with ``heldout > 0``) the deactivation experiment on ``lm``.

    Raises:
        DataError: bad settings, a language the sentences lack, too few sentences.
        DftlensError: non-finite activations or log-probabilities.
    """
    config = config or NeuronsConfig()
    stats_texts, held = load_split(config)
    stats = activation_stats(lm, stats_texts, config.batch_size, config.max_length, progress)
    if (stats.tokens == 0).any():
        raise DataError("A language has no tokens to count; give longer sentences.")
    selection = select_neurons(stats.probs, config.top_rate, config.filter_rate, config.activation_bar_ratio)
    counts = layer_counts(selection, stats.langs, lm.n_layers)
    deactivation = None
    if config.heldout:
        deactivation = deactivation_table(lm, neuron_sets(selection, stats.langs), held, config, progress)
    summary = summarise(counts, deactivation, lm.n_layers)
    return NeuronsResult(lm.name, lm.n_layers, config, stats, selection, neuron_table(stats, selection), counts,
                         deactivation, summary)


def read_neuron_sets(directory: str | Path) -> tuple[dict[str, NeuronSet], ActivationStats]:
    """The neuron sets and statistics a ``dftlens neurons`` run wrote (``neurons.csv``, ``neuron_stats.npz``).

    Raises:
        DataError: the directory lacks those files, or the statistics file holds anything but plain
            arrays (it is read with ``allow_pickle=False``: loading it never runs code).
    """
    directory = Path(directory)
    if not (directory / "neurons.csv").is_file() or not (directory / "neuron_stats.npz").is_file():
        raise DataError(f"{directory} has no neurons.csv and neuron_stats.npz; run `dftlens neurons --out {directory}`.")
    try:  # plain arrays only: a pickled object in the file would run code when loaded
        data = np.load(directory / "neuron_stats.npz", allow_pickle=False)
        stats = ActivationStats(data["active"], data["tokens"], data["post_sum"], [str(x) for x in data["langs"]])
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(f"{directory / 'neuron_stats.npz'} is not a neuron_stats.npz dftlens wrote (plain arrays "
                        f"active, tokens, post_sum, langs): {str(exc).splitlines()[0][:100]}.") from None
    table = read_csv(directory / "neurons.csv", keep_default_na=False)  # write_csv's quotes undone
    sets: dict[str, NeuronSet] = {lang: {} for lang in stats.langs}
    for layer, neuron, langs in table[["layer", "neuron", "languages"]].itertuples(index=False):
        for lang in filter(None, str(langs).split(";")):
            sets[lang].setdefault(int(layer), []).append(int(neuron))
    return {k: {l: np.array(v) for l, v in s.items()} for k, s in sets.items()}, stats


def evidence_inputs(neurons: str | Path | None = None, steering: str | Path | None = None) -> dict:
    """``{"neurons": summary, "steering": summary}`` of a ``dftlens neurons`` / ``dftlens steer`` run directory
    (their ``summary.json``), for the layer evidence kinds; a None directory is left out.

    Raises:
        DataError: a directory without a readable ``summary.json`` of that verb.
    """
    out = {}
    for key, directory, kind in (("neurons", neurons, "language neurons"), ("steering", steering, "language steering")):
        if directory is None:
            continue
        path = Path(directory).expanduser() / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
        if not isinstance(summary, dict) or summary.get("kind") != kind:
            verb = "neurons" if key == "neurons" else "steer"
            raise DataError(f"{directory} holds no summary.json of a `dftlens {verb}` run; run `dftlens {verb} --out "
                            f"{directory}` first.")
        out[key] = summary
    return out


__all__ = ["evidence_inputs", "NeuronsResult", "run_neurons", "zero_edits", "random_like", "sentence_nll", "deactivation_table",
           "neuron_table", "layer_counts", "summarise", "cluster_edges", "load_split", "read_neuron_sets", "OUTPUTS"]
