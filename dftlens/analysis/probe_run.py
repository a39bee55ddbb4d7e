"""`dftlens probe` as a Python API: prompts -> logit lens -> probes -> layer choice.

    from dftlens import load_model
    from dftlens.analysis.probe_run import ProbeConfig, run_probe

    lm = load_model("gemma3-270m")
    result = run_probe(lm, ProbeConfig(pairs=[("fr", "zh")], max_items=40))
    result.lens            # per task/pair/layer means with 95% CIs (lens.csv)
    result.choice.to_dict()
    result.save("runs/my-probe")
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from ..config_files import check_fields, setting
from ..data.parallel import ParallelData, load_sentences, load_words
from ..data.prompts import TASKS, PromptItem, build_items
from ..errors import DataError
from ..io import write_csv
from ..output_dirs import results_dir
from ..layers import LayerChoice, check_order
from ..models import LensModel
from ..models.name_resolution import check_top_k
from .layer_choice import RULES, RuleParams, check_choosable, choose_layers, rule_curves
from .layer_bootstrap import assess
from .neurons import evidence_inputs
from .lens import PROB_COLUMNS, measure
from .stats import summarise
from .token_sets import OVERLAP_KINDS, OVERLAP_POLICIES, TokenSets

DEFAULT_TASKS = ("translation", "repetition")
OUTPUTS = ["layers.json", "lens.csv", "lens_items.csv", "probes.csv", "report.html", "figures"]
PROBE_LANGUAGES = ["en", "zh", "fr", "de", "ru", "ja", "es", "vi", "ar"]


@dataclass
class ProbeConfig:
    """What ``dftlens probe`` measures (the command line is generated from these fields).

    Translation prompts for each ``pairs`` entry (Wendler et al. 2024's format), repetition
    (and optionally cloze) prompts in ``mono_langs``, and linear probes on parallel
    sentences in ``probe_langs`` (:mod:`.linear_probes`); the layer rule
    (:mod:`.layer_choice`) then picks LC and ET unless ``lc_layer``/``et_layer`` are given.
    ``max_items``/``max_sentences`` None: use all. Cloze is not in the default tasks: on
    the embedded Gemma-3-270M its last-layer P(target) is 0.01-0.02 with whole-word
    blanks, so its curves say nothing about a pivot.
    """

    pairs: list[tuple[str, str]] = setting(
        default_factory=lambda: [("fr", "zh"), ("de", "ja"), ("zh", "fr")],
        help="Translation pairs input:target, comma-separated.")
    tasks: list[str] = setting(
        default_factory=lambda: list(DEFAULT_TASKS),
        help="Which of Wendler's tasks to run: translation, repetition, cloze (cloze is off by default; see docs/verbs/probe.md).")
    mono_langs: list[str] | None = setting(None, "Languages for repetition/cloze (default: the targets).")
    words: str | None = setting(None, "Parallel words: a JSONL/CSV file, or Wendler et al.'s (data/langs) or Dumas "
                                       "et al.'s (data/<lang>/word_translation.csv) word files; default: bundled.")
    sentences: str | None = setting(None, "Parallel sentence file or FLORES dir; default: bundled.")
    probe_langs: list[str] = setting(default_factory=lambda: list(PROBE_LANGUAGES), help="Languages for the probes.")
    max_items: int | None = setting(32, "Prompts per task and pair (0 = all).", none_as=0)
    max_sentences: int | None = setting(60, "Parallel sentences for the probes (0 = all).", none_as=0)
    run_probes: bool = setting(True, "Run the linear probes on parallel sentences.", flag="--probes/--no-probes")
    batch_size: int = setting(16, "Prompts per forward pass.")
    top_k: int = setting(10, "Top-k lens tokens whose languages give the share_* columns (MWork's token-share view).")
    seed: int = setting(0, "Seed for demonstrations and probe splits.")
    lc_layer: int | None = setting(None, "Override the LC layer (0-based block index).")
    et_layer: int | None = setting(None, "Override the ET layer (0-based block index).")
    overlap: str = setting("exclusive", "When two of an item's English, target and input-word token sets share a "
                                        "token: exclusive (keep the item, the shared tokens count for no language), "
                                        "drop (drop the item) or keep (Wendler et al.: drop only English-target "
                                        "overlaps).", choices=OVERLAP_POLICIES)
    rule: str = setting("current", "The rule that decides LC and ET: current (English onset and probes) or "
                                   "entropy (Huo et al.: first and second sharp entropy drop); both are recorded.",
                        choices=RULES)
    causal_pairs: int = setting(0, "Concept pairs for activation-patching evidence in layers.json (0: none; "
                                   "--causal sets 32).")
    neurons: str | None = setting(None, "A `dftlens neurons` output directory: where its language neurons sit joins "
                                        "layers.json's evidence.")
    steering: str | None = setting(None, "A `dftlens steer` output directory: its best steering layers join "
                                         "layers.json's evidence.")

    def __post_init__(self) -> None:
        """Every value that needs no file and no model, checked at construction (one sentence each)."""
        check_fields(self)
        self.tasks = list(DEFAULT_TASKS) if self.tasks is None else list(self.tasks)  # None: the defaults
        self.probe_langs = list(PROBE_LANGUAGES) if self.probe_langs is None else list(self.probe_langs)
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise DataError(f"Unknown task(s) {', '.join(unknown) or '(none given)'}; use {', '.join(TASKS)}.")
        if not self.pairs and "translation" in self.tasks:
            raise DataError("No --pairs given; translation needs at least one input:target pair, e.g. fr:zh.")
        for lang_pair in self.pairs:
            if "en" in lang_pair:
                raise DataError(f"Pair {lang_pair[0]}:{lang_pair[1]} involves English; the probe compares "
                                "English with the input and target languages, so pick two non-English ones.")
        for name in ("max_items", "max_sentences"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1 (or 0 for all), not {value}.")
        for name in ("batch_size", "top_k"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}.")
        check_order(self.lc_layer, self.et_layer)

    def load_data(self) -> tuple[ParallelData, ParallelData | None]:
        """The words and (if needed) sentences, checked for every language asked for: before the model loads."""
        words = load_words(self.words, self.languages())
        if len(words) < 5 and ("translation" in self.tasks or "repetition" in self.tasks):
            raise DataError(f"{words.source} has {len(words)} words; a prompt needs 5 (4 demonstrations and "
                            "the word asked for).")
        needs_sentences = "cloze" in self.tasks or self.run_probes
        langs = sorted(set(self.languages()) | set(self.probe_langs)) if self.run_probes else self.languages()
        sentences = load_sentences(self.sentences, langs) if needs_sentences else None
        evidence_inputs(self.neurons, self.steering)  # a missing neurons/steer run fails before the model loads
        return words, sentences

    def languages(self) -> list[str]:
        """Every language the prompts use: English, both sides of each pair and the monolingual ones, sorted."""
        langs = {"en"} | {lang for pair in self.pairs for lang in pair} | set(self.monolingual())
        return sorted(langs)

    def monolingual(self) -> list[str]:
        """The languages of repetition and cloze prompts: ``mono_langs``, by default the pairs' targets."""
        return self.mono_langs if self.mono_langs is not None else sorted({t for _, t in self.pairs})


@dataclass
class ProbeResult:
    """What :func:`run_probe` measured: the tables written as CSVs, the layer choice and the counts."""

    model: str
    n_layers: int
    config: ProbeConfig
    lens: pd.DataFrame  # summary with CIs, one row per task/input/target/subset/layer
    lens_items: pd.DataFrame  # one row per item and layer
    probes: pd.DataFrame
    choice: LayerChoice
    counts: pd.DataFrame  # prompts built / dropped for token overlap / used, per task and pair
    patching: pd.DataFrame | None = None  # --causal: patching means with CIs per layer (patching.csv's table)

    def summary(self) -> pd.DataFrame:
        """A short table for the terminal, one row per task, pair and subset, that fits 80 columns.

        Columns: ``task``, ``pair`` (input->target), ``subset``, ``n`` (items), ``max P(en)`` and
        ``max H`` (the peak of P(English) and of the entropy in bits, each as ``value @layer``) and
        ``P(tgt) L<last>`` (P(target) at the last block).
        """
        rows = []
        lens = self.lens if "subset" in self.lens.columns else self.lens.assign(subset="all")
        for (task, src, tgt, subset), g in lens.groupby(["task", "input_lang", "target_lang", "subset"]):
            g = g.set_index("layer")
            rows.append({
                "task": task, "pair": f"{src}->{tgt}", "subset": subset, "n": int(g["n_items"].iloc[0]),
                "max P(en)": f"{g['p_en'].max():.3f} @{int(g['p_en'].idxmax())}",
                f"P(tgt) L{self.n_layers - 1}": f"{g['p_target'].iloc[-1]:.3f}",
                "max H": f"{g['entropy_bits'].max():.1f} @{int(g['entropy_bits'].idxmax())}",
            })
        return pd.DataFrame(rows)

    def figures(self) -> list[tuple[str, str, "go.Figure"]]:
        """The report's figures as (key, heading, plotly figure), in page order."""
        from ..viz.report import report_figures

        return report_figures(self.lens, self.probes, self.choice.to_dict(), self.lens_items, self.patching)

    def save(self, out: str | Path, overwrite: bool = False, report: bool = True,
             figure_formats: list[str] | str | None = None, extra: Callable[[Path], object] | None = None) -> Path:
        """Write layers.json, lens.csv, lens_items.csv, probes.csv, run_config.yaml (the settings) and report.html
        to ``out``; with ``figure_formats`` (``"png,svg"``, any of png/svg/pdf) also every report
        figure as ``out/figures/<key>.<format>`` (needs kaleido and Chromium)."""
        from ..viz.export import parse_formats

        formats = parse_formats(figure_formats)  # refuse a bad format before writing anything
        with results_dir(out, OUTPUTS, overwrite, self.config, "probe", extra) as tmp:  # run_config.yaml, then the results
            write_csv(tmp / "lens.csv", self.lens)
            write_csv(tmp / "lens_items.csv", self.lens_items)
            write_csv(tmp / "probes.csv", self.probes)
            if report or formats:
                from ..viz.report import write_report

                figs = self.figures()
                if report:
                    write_report(tmp / "report.html", self.lens, self.probes, self.choice.to_dict(),
                                 title=f"dftlens probe: {self.model}", summary_df=self.summary(),
                                 lens_items=self.lens_items, counts_df=self.counts, patching=self.patching)
                if formats:
                    from ..viz.export import save_figures

                    save_figures({key: fig for key, _, fig in figs}, tmp / "figures", formats)
            self.choice.save(tmp / "layers.json")  # last: its presence means the run completed
        return Path(out).expanduser()


def build_prompt_items(config: ProbeConfig, words: ParallelData, sentences: ParallelData | None,
                       token_sets: TokenSets) -> tuple[list[PromptItem], pd.DataFrame]:
    """All prompts for the configured tasks, minus those ``config.overlap`` drops
    (:meth:`TokenSets.answer_sets`).

    The counts table has, per task and pair: ``overlap`` (the policy), ``built``,
    ``overlap_<kind>`` for each overlap kind (items whose sets share a token that way,
    whatever the policy; an item can count in several), ``dropped`` (items the policy
    dropped, each once), ``dropped_empty`` (of those, items left without an English or
    target token), ``removed_en``/``removed_target``/``removed_input`` (token ids the
    policy took out of the sets, summed over the items kept; ``exclusive`` only) and
    ``used`` (after ``max_items``)."""
    jobs = [(t, s, d) for t in config.tasks if t == "translation" for s, d in config.pairs]
    jobs += [(t, lang, lang) for t in config.tasks if t != "translation" for lang in config.monolingual()]
    # One seeded order of concepts for every job: --max-items then takes the same
    # varied sample for each pair, not the first (thematically grouped) lines of the file.
    rank = {item_id: i for i, item_id in enumerate(random.Random(config.seed).sample(words.ids, len(words.ids)))}
    items, counts = [], []
    for task, src, tgt in jobs:
        built = build_items(task, words, sentences, src, tgt, seed=config.seed)
        row = {"task": task, "input_lang": src, "target_lang": tgt, "overlap": config.overlap, "built": len(built),
               **{f"overlap_{k}": 0 for k in OVERLAP_KINDS}, "dropped": 0, "dropped_empty": 0,
               "removed_en": 0, "removed_target": 0, "removed_input": 0}
        kept = []
        for it in built:
            sets = token_sets.for_item(it, config.overlap)
            for kind in sets.overlaps:
                row[f"overlap_{kind}"] += 1
            if sets.kept:
                kept.append(it)
                for side, n in sets.removed.items():
                    row[f"removed_{side}"] += n
            else:
                row["dropped"] += 1
                row["dropped_empty"] += sets.reason == "empty"
        kept.sort(key=lambda it: rank[it.item_id])
        used = kept[: config.max_items] if config.max_items else kept
        counts.append({**row, "used": len(used)})
        items.extend(used)
    return items, pd.DataFrame(counts)


def summarise_subsets(lens_items: pd.DataFrame) -> pd.DataFrame:
    """lens.csv: per task, pair, subset and layer, means with 95% CIs and ``n_items``.

    ``subset`` is ``all`` (every item) or ``correct`` (items whose top-1 lens token at the
    last layer is in the target set); a pair with no correct item has no ``correct`` rows.
    Probability CIs are Student-t clipped to [0, 1]; the entropy's is a percentile bootstrap
    (never below 0 bits), absent (NaN) for fewer than ``stats.MIN_BOOTSTRAP_ITEMS`` items."""
    keys = ["task", "input_lang", "target_lang", "layer"]
    bounds = {c: (0.0, 1.0) for c in PROB_COLUMNS}
    cols, boot = PROB_COLUMNS + ["entropy_bits"], ["entropy_bits"]
    frames = [summarise(lens_items, keys, cols, bounds=bounds, bootstrap=boot).assign(subset="all")]
    if "correct" in lens_items.columns and lens_items["correct"].any():
        right = lens_items[lens_items["correct"].astype(bool)]
        frames.append(summarise(right, keys, cols, bounds=bounds, bootstrap=boot).assign(subset="correct"))
    lens = pd.concat(frames, ignore_index=True)
    front = ["task", "input_lang", "target_lang", "subset", "layer", "n_items"]
    return lens[front + [c for c in lens.columns if c not in front]]


def alignment_curve(probes: pd.DataFrame) -> pd.Series | None:
    """Mean cross-lingual retrieval accuracy per layer (over language pairs)."""
    if probes is None or probes.empty or "retrieval" not in set(probes["probe"]):
        return None
    rows = probes[(probes["probe"] == "retrieval") & (probes["metric"] == "accuracy")]
    return rows.groupby("layer")["value"].mean() if not rows.empty else None


def overlap_evidence(policy: str, lens_items: pd.DataFrame, n_layers: int,
                     alignment: pd.Series | None = None) -> dict:
    """``layers.json``'s ``evidence["overlap"]``: the run's ``policy``, the sensitivity table
    (:func:`~.overlap_report.overlap_sensitivity`, as records) and the rule's LC/ET under each
    policy (:func:`~.overlap_report.policy_choices`)."""
    from .overlap_report import overlap_sensitivity, policy_choices

    table = overlap_sensitivity(lens_items)
    return {"policy": policy, "sensitivity": table.to_dict(orient="records"),
            "choices": policy_choices(lens_items, n_layers, alignment)}


def run_probe(lm: LensModel, config: ProbeConfig | None = None, progress: bool = True) -> ProbeResult:
    """Measure the logit lens and the probes on ``lm`` and choose the LC and ET layers.

    Follows Wendler et al. (2024, "Do Llamas Work in English?") for the prompts and the
    per-layer P(English)/P(target) of the logit lens, Zhao et al. (MWork) for the token-share
    view, and adds linear probes (:mod:`.linear_probes`); the layer rule is :mod:`.layer_choice`,
    and with ``config.causal_pairs`` Dumas et al.'s patching adds ``evidence["causal"]``.

    Returns:
        :class:`ProbeResult`: ``lens`` (per task/pair/subset/layer means with 95% CIs,
        probabilities in [0, 1], entropy in bits), ``lens_items`` (per item and layer),
        ``probes``, ``counts`` and ``choice`` (a :class:`~dftlens.layers.LayerChoice`, the
        object ``dftlens train`` reads back from ``layers.json``). ``result.save(out)`` writes
        them all at once.

    Raises:
        DataError: bad config values, a missing language or file, no usable prompts.
        LayerError: an LC/ET override out of range or not LC < ET.
    """
    config = config or ProbeConfig()
    config.__post_init__()  # the values may have been changed since construction
    check_choosable(lm.n_layers, config.lc_layer, config.et_layer)  # before the measurement, not after
    check_top_k(config.top_k, lm.name, lm.vocab_size)
    words, sentences = config.load_data()
    token_sets = TokenSets(lm.tokenizer)
    items, counts = build_prompt_items(config, words, sentences, token_sets)
    if not items:
        raise DataError("No prompts are left to measure (every item was dropped); add words or change --pairs.")

    lens_items = measure(lm, items, token_sets, batch_size=config.batch_size, top_k=config.top_k, progress=progress,
                         policy=config.overlap)
    lens = summarise_subsets(lens_items)

    from .linear_probes import COLUMNS as PROBE_COLUMNS, run_probes

    probes = pd.DataFrame(columns=PROBE_COLUMNS)  # --no-probes: probes.csv is a header pandas reads, no rows
    if config.run_probes:
        probe_langs = [lang for lang in config.probe_langs if lang in sentences.languages]
        n = config.max_sentences or len(sentences)
        texts = {lang: column[:n] for lang, column in sentences.by_language(probe_langs).items()}
        probes = run_probes(lm, texts, ids=sentences.ids[:n], seed=config.seed, progress=progress)

    params = RuleParams()
    curves, subsets = rule_curves(lens_items, params.min_correct_items)
    alignment = alignment_curve(probes)
    choice = choose_layers(curves, lm.n_layers, alignment, params, rule=config.rule, lc=config.lc_layer,
                           et=config.et_layer, model=lm.name, languages=tuple(config.languages()))
    choice = replace(choice, evidence=choice.evidence.but(
        rule_subsets=subsets, prompt_counts=counts.to_dict(orient="records"),
        overlap=overlap_evidence(config.overlap, lens_items, lm.n_layers, alignment)))
    causal, patching = None, None
    if config.causal_pairs:
        from .patch_config import PatchConfig
        from .patch_evidence import causal_check
        from .patching import run_patching

        patched = run_patching(lm, PatchConfig(n_pairs=config.causal_pairs, seed=config.seed), progress=progress)
        causal, patching = causal_check(patched.causal, choice.lc_layer, choice.et_layer), patched.table
    choice = assess(choice, lens_items, alignment, params, seed=config.seed, causal=causal,
                    inputs=evidence_inputs(config.neurons, config.steering))
    return ProbeResult(lm.name, lm.n_layers, config, lens, lens_items, probes, choice, counts, patching)
