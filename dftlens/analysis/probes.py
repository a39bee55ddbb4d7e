"""Per-layer linear probes on mean-pooled sentence residuals (``probes.csv``).

Two kinds of evidence, both per block (``layer`` is the 0-based block index, the
representation is ``blocks.{layer}.hook_resid_post``):

* **Language identity** (``lang_id_all``, ``lang_id_latin``): a standardised,
  L2-regularised multinomial logistic regression predicts the language of a
  sentence representation. Train/test splits are grouped by sentence id (all
  translations of one sentence fall on the same side), 5 folds; the reported
  accuracy pools the out-of-fold predictions (= the size-weighted mean over the
  folds). Next to it: the majority-class baseline, a control task (see
  :func:`control_labels`) run through the identical probe and folds, and
  selectivity = accuracy - control accuracy (Hewitt and Liang 2019). Language is
  trivially decodable from script at every layer, so ``lang_id_latin`` repeats
  the probe on the Latin-script languages only (en, fr, de, es, vi in the
  bundled set), where it has to read more than the alphabet.
* **Cross-lingual alignment** (``retrieval``): for a language pair, each
  sentence retrieves its translation among all ``n`` candidates of the other
  language by cosine similarity; accuracy averages both directions; chance is
  ``1/n``. Each language's vectors are mean-centred first (its mean over the
  sentences is subtracted), the standard way to remove the language-specific
  offset that otherwise dominates the cosine; the un-centred accuracy and the
  cosine margin (mean cosine of true pairs minus mean cosine of non-pairs) are
  reported too.

A probe shows that information is *decodable*, not that the model uses it:
compare selectivity across layers, not raw accuracy.

Uncertainty: 95% percentile bootstrap intervals over sentence ids (clusters: all
languages of a resampled sentence come along), 200 resamples with a fixed seed.
For the probes they are conditional on the fitted folds (they capture the
variation over test sentences, not over re-training); for retrieval they are
conditional on the candidate set (queries are resampled, candidates are fixed).

Pooling: the mean over a sentence's real tokens (attention mask), *excluding the
BOS token* when the tokenizer adds one: BOS carries a residual norm an order of
magnitude above the other tokens in many models (about 43k vs 3k in Gemma-3-270M)
and would otherwise dominate every sentence mean with a sentence-independent
vector.

The heavy part (:func:`sentence_representations`) runs the model once per batch
for all layers; everything below it works on plain numpy arrays, so tests and
notebooks can call it on synthetic data.
"""

from __future__ import annotations

import unicodedata
import warnings
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.languages import SCRIPTS, parse_pairs
from ..errors import DataError

COLUMNS = [
    "layer", "probe", "metric", "value", "ci_low", "ci_high", "control", "baseline", "selectivity",
    "selectivity_ci_low", "selectivity_ci_high", "lang_pair", "n",
]

DEFAULT_C = 0.1  # inverse L2 strength on standardised features (see lang_id_scores)


# ---------------------------------------------------------------------------
# Representations
# ---------------------------------------------------------------------------
class SentenceReps(NamedTuple):
    """Mean-pooled residuals and what they index.

    ``reps``: float32 ``[n_langs, n_sentences, n_layers, d]``; ``langs``: the
    language order of axis 0; ``layers``: the block index of each entry on axis 2;
    ``token_ids``: ``[lang][sentence]`` the pooled token ids (BOS and pads removed),
    which the control task needs.
    """

    reps: np.ndarray
    langs: list[str]
    layers: list[int]
    token_ids: list[list[list[int]]]


def _check_sentences(sentences: dict[str, Sequence[str]]) -> tuple[list[str], int]:
    if not sentences:
        raise DataError("No sentences given: pass at least one language with a list of sentences.")
    langs = list(sentences)
    lengths = {lang: len(sentences[lang]) for lang in langs}
    n = lengths[langs[0]]
    if len(set(lengths.values())) != 1:
        raise DataError(f"Parallel sentences must have the same number per language; got {lengths}.")
    if n == 0:
        raise DataError("The sentence lists are empty.")
    for lang in langs:
        for i, text in enumerate(sentences[lang]):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"Sentence {i} of language {lang!r} is empty or not a string.")
    return langs, n


def pooling_weights(input_ids: torch.Tensor, attention_mask: torch.Tensor, bos_token_id: int | None) -> torch.Tensor:
    """[batch, pos] float weights: 1 on real tokens, 0 on pads and on a leading BOS.

    The BOS is recognised per row as the first real token (left or right padding)
    when it equals ``bos_token_id``, so a tokenizer that adds none loses nothing.
    """
    weights = attention_mask.to(torch.float32).clone()
    if bos_token_id is not None:
        first = attention_mask.long().argmax(dim=1)  # first real position, either padding side
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        is_bos = (input_ids[rows, first] == bos_token_id) & attention_mask[rows, first].bool()
        weights[rows[is_bos], first[is_bos]] = 0.0
    if (weights.sum(dim=1) == 0).any():
        raise DataError("A sentence has no tokens besides BOS; remove empty sentences.")
    return weights


@torch.no_grad()
def sentence_representations(
    lm,
    sentences: dict[str, Sequence[str]],
    layers: Iterable[int] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    padding_side: str | None = None,
) -> SentenceReps:
    """Mean-pooled ``resid_post`` of every sentence at every requested layer.

    ``sentences`` maps a language code to its sentences, aligned by index. All
    texts are sorted by token length (less padding) and batched across languages;
    each batch is one capture of all requested layers. Pads and the BOS token are
    excluded from the mean (see :func:`pooling_weights`); the result does not
    depend on ``padding_side``.
    """
    from tqdm import tqdm

    langs, n = _check_sentences(sentences)
    layers = list(range(lm.n_layers)) if layers is None else [lm.check_layer(layer) for layer in layers]
    names = lm.hook_names(layers=layers)
    items = [(li, si, sentences[lang][si]) for li, lang in enumerate(langs) for si in range(n)]
    lengths = [len(ids) for ids in lm.tokenizer([t for _, _, t in items], add_special_tokens=True)["input_ids"]]
    order = sorted(range(len(items)), key=lambda k: -lengths[k])  # longest first: memory errors surface early
    bos = getattr(lm.tokenizer, "bos_token_id", None)

    reps = np.zeros((len(langs), n, len(layers), lm.d_model), dtype=np.float32)
    token_ids: list[list[list[int]]] = [[[] for _ in range(n)] for _ in langs]
    bar = tqdm(total=len(items), desc="probe representations", unit="sent", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            chunk = [items[k] for k in order[start:start + batch_size]]
            batch = lm.tokenize([t for _, _, t in chunk], padding_side=padding_side)
            weights = pooling_weights(batch["input_ids"], batch["attention_mask"], bos)
            cap = lm.capture(batch, names)
            denom = weights.sum(dim=1, keepdim=True)  # [batch, 1]
            pooled = torch.stack(
                [torch.einsum("bpd,bp->bd", cap[name].float(), weights) / denom for name in names], dim=1
            ).cpu().numpy()  # [batch, layers, d]
            ids_cpu, w_cpu = batch["input_ids"].cpu(), weights.cpu().bool()
            for row, (li, si, _) in enumerate(chunk):
                reps[li, si] = pooled[row]
                token_ids[li][si] = ids_cpu[row][w_cpu[row]].tolist()
            bar.update(len(chunk))
    finally:
        bar.close()
    return SentenceReps(reps, langs, layers, token_ids)


# ---------------------------------------------------------------------------
# Language identity
# ---------------------------------------------------------------------------
def latin_languages(sentences: dict[str, Sequence[str]], threshold: float = 0.9) -> list[str]:
    """Languages whose letters are at least ``threshold`` Latin script, read from the text."""
    out = []
    for lang, texts in sentences.items():
        letters = [ch for text in texts for ch in text if ch.isalpha()]
        if letters and sum("LATIN" in unicodedata.name(ch, "") for ch in letters) / len(letters) >= threshold:
            out.append(lang)
    return out


def group_folds(groups: Sequence, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a shuffled GroupKFold: one group never straddles a split."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError("Language-identity probes need at least 2 sentences (ids) to split train/test.")
    splitter = GroupKFold(n_splits=min(n_splits, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def control_labels(
    token_ids: Sequence[Sequence[int]], item_langs: Sequence, n_classes: int, seed: int = 0
) -> np.ndarray:
    """Control-task labels: a random linear read-out of the bag of token types.

    Hewitt and Liang give every *word type* a random but fixed label; a probe can
    then only succeed by memorising type identities, and its control accuracy
    measures how much the probe can memorise. The sentence-level analogue used
    here: every token type ``t`` (a vocabulary id) gets a fixed random score
    vector ``w_t ~ N(0, I_K)`` over the ``K`` classes of the real task; a
    sentence's score is the mean of ``w_t`` over its tokens (with multiplicity:
    the same mean pooling as the representation), minus the mean score of its
    language; its label is the argmax.

    Why this and not the simpler options:

    * a random label per item, or per sentence id, never recurs across a split
      grouped by sentence id, so the control would be at chance *by construction*
      and say nothing about the probe's capacity (and without the group split, a
      label shared by the translations of a sentence would reward cross-lingual
      alignment, a real property, rather than memorisation);
    * token types recur across sentences, so labels tied to them *can* be learnt
      on training sentences and transferred to test sentences, but only by
      memorising which types a sentence contains, i.e. lexical identity
      unrelated to the language label; a linear probe on a mean-pooled
      representation can represent exactly this rule (argmax of a linear map of
      the mean type embedding);
    * types are language-specific (every Chinese sentence ends in "。"), so raw
      type scores would carry a per-language offset and a probe that only knew
      the language would beat chance on the control. Subtracting each language's
      mean score removes that offset: the label distribution is roughly uniform
      within every language, and the control measures memorisation, not
      language.

    On Gemma-3-270M (130 bundled sentences, 9 languages, layer 8, one fold) the
    probe fits the control labels of its training sentences almost perfectly
    (train accuracy 0.999) while its test accuracy stays near chance (0.115 vs
    1/9): memorisation is possible, transfer to unseen sentences is not, which
    is what a control task should show.
    """
    item_langs = np.asarray(item_langs)
    types = sorted({t for ids in token_ids for t in ids})
    row = {t: i for i, t in enumerate(types)}
    table = np.random.default_rng(seed).standard_normal((len(types), n_classes))
    scores = np.stack([table[[row[t] for t in ids]].mean(axis=0) for ids in token_ids])
    for lang in np.unique(item_langs):
        scores[item_langs == lang] -= scores[item_langs == lang].mean(axis=0)
    return scores.argmax(axis=1)


def probe_predictions(
    X: np.ndarray, y: np.ndarray, folds, C: float = DEFAULT_C, seed: int = 0, max_iter: int = 1000
) -> np.ndarray:
    """Out-of-fold predictions of a standardised multinomial logistic regression."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.empty(len(y), dtype=y.dtype)
    for train, test in folds:
        if len(np.unique(y[train])) < 2:  # a one-class training fold: the only possible answer
            pred[test] = y[train][0]
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[train], y[train])
        pred[test] = clf.predict(X[test])
    return pred


def majority_predictions(y: np.ndarray, folds) -> np.ndarray:
    """Out-of-fold predictions of the training folds' most frequent class."""
    pred = np.empty(len(y), dtype=y.dtype)
    for train, test in folds:
        values, counts = np.unique(y[train], return_counts=True)
        pred[test] = values[counts.argmax()]
    return pred


def bootstrap_ci(
    per_item: np.ndarray, groups: Sequence, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> np.ndarray:
    """Cluster-bootstrap percentile intervals of the item means of each column.

    ``per_item`` is ``[n_items]`` or ``[n_items, k]``; whole groups (sentence
    ids) are resampled. Returns ``[k, 2]`` (low, high). Differences of columns
    (selectivity) must be passed as their own column so they stay paired.
    """
    x = np.asarray(per_item, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = g.max() + 1
    sums = np.zeros((n_groups, x.shape[1]))
    np.add.at(sums, g, x)
    sizes = np.bincount(g, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws]).astype(float)  # [n_boot, G]
    stats = counts @ sums / (counts @ sizes)[:, None]  # [n_boot, k]
    alpha = (1 - level) / 2
    return np.quantile(stats, [alpha, 1 - alpha], axis=0).T


def lang_id_scores(
    X: np.ndarray,
    y: np.ndarray,
    control_y: np.ndarray,
    groups: Sequence,
    folds,
    C: float = DEFAULT_C,
    seed: int = 0,
    n_boot: int = 200,
) -> dict:
    """Accuracy, control accuracy, majority baseline and selectivity with CIs.

    ``C`` = 0.1 on standardised features: with more dimensions than training
    sentences the classes are separable at any C, and a stronger L2 penalty is
    what Hewitt and Liang recommend for selective probes (it hurts the
    memorising control far more than a real, low-complexity signal).
    """
    correct = probe_predictions(X, y, folds, C, seed) == y
    ctrl = probe_predictions(X, control_y, folds, C, seed) == control_y
    base = majority_predictions(y, folds) == y
    per_item = np.stack([correct, ctrl, correct.astype(float) - ctrl], axis=1).astype(float)
    ci = bootstrap_ci(per_item, groups, n_boot, seed)
    return {
        "value": correct.mean(), "ci_low": ci[0, 0], "ci_high": ci[0, 1],
        "control": ctrl.mean(), "baseline": base.mean(),
        "selectivity": correct.mean() - ctrl.mean(), "selectivity_ci_low": ci[2, 0], "selectivity_ci_high": ci[2, 1],
        "n": len(y),
    }


# ---------------------------------------------------------------------------
# Cross-lingual alignment
# ---------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_per_item(A: np.ndarray, B: np.ndarray, centre: bool = True) -> dict[str, np.ndarray]:
    """Per sentence: translation retrieval hits (both directions) and cosine margin.

    ``A`` and ``B`` are ``[n, d]`` aligned by row. A hit needs the true
    translation's cosine to be strictly above every other candidate's (ties
    count as misses). ``margin[i]`` = cos(a_i, b_i) minus the mean cosine of
    a_i and b_i with the other ``n - 1`` sentences; its mean is the mean cosine
    of true pairs minus that of non-pairs.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if centre:
        A = A - A.mean(axis=0)
        B = B - B.mean(axis=0)
    S = _unit(A) @ _unit(B).T  # S[i, j] = cos(a_i, b_j)
    n = len(S)
    diag = np.diag(S).copy()
    off = S.copy()
    np.fill_diagonal(off, -np.inf)
    a_to_b = diag > off.max(axis=1)
    b_to_a = diag > off.max(axis=0)
    if n > 1:
        margin = diag - (S.sum(axis=1) + S.sum(axis=0) - 2 * diag) / (2 * (n - 1))
    else:
        margin = np.zeros(n)
    return {"a_to_b": a_to_b, "b_to_a": b_to_a, "hit": (a_to_b.astype(float) + b_to_a) / 2, "margin": margin}


def retrieval_scores(A: np.ndarray, B: np.ndarray, seed: int = 0, n_boot: int = 200) -> list[dict]:
    """Rows for one pair at one layer: accuracy and margin, centred and un-centred."""
    rows = []
    ids = np.arange(len(A))
    for centre, suffix in ((True, ""), (False, "_uncentred")):
        item = retrieval_per_item(A, B, centre)
        ci = bootstrap_ci(np.stack([item["hit"], item["margin"]], axis=1), ids, n_boot, seed)
        rows.append({"metric": "accuracy" + suffix, "value": item["hit"].mean(), "ci_low": ci[0, 0],
                     "ci_high": ci[0, 1], "baseline": 1.0 / len(A), "n": len(A)})
        rows.append({"metric": "cos_margin" + suffix, "value": item["margin"].mean(), "ci_low": ci[1, 0],
                     "ci_high": ci[1, 1], "baseline": 0.0, "n": len(A)})
    return rows


def default_pairs(langs: Sequence[str]) -> list[tuple[str, str]]:
    """Every language against English (against the first language if English is absent)."""
    if not langs:
        return []
    pivot = "en" if "en" in langs else langs[0]
    return [(lang, pivot) for lang in langs if lang != pivot]


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
def probe_table(
    reps: np.ndarray,
    langs: Sequence[str],
    token_ids: Sequence[Sequence[Sequence[int]]],
    ids: Sequence | None = None,
    layers: Sequence[int] | None = None,
    pairs=None,
    latin_langs: Sequence[str] | None = None,
    seed: int = 0,
    C: float = DEFAULT_C,
    n_splits: int = 5,
    n_boot: int = 200,
    progress: bool = False,
) -> pd.DataFrame:
    """The tidy probe table from representations ``[n_langs, n_sentences, n_layers, d]``.

    ``layers`` names the block index of each entry on axis 2 (default 0..).
    ``latin_langs`` defaults to the languages whose script is Latin in
    :data:`dftlens.data.languages.SCRIPTS`; with fewer than two of them the
    ``lang_id_latin`` rows are left out. ``pairs`` adds retrieval pairs to the
    default (every language against English). One row per layer x probe x
    metric (x pair); columns :data:`COLUMNS`.
    """
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    reps = np.asarray(reps)
    langs = list(langs)
    n_langs, n_sent, n_layers, _ = reps.shape
    if len(langs) != n_langs:
        raise ValueError(f"{len(langs)} language codes for {n_langs} languages in reps.")
    ids = [f"s{i}" for i in range(n_sent)] if ids is None else list(ids)
    if len(ids) != n_sent:
        raise DataError(f"{len(ids)} sentence ids for {n_sent} sentences.")
    layers = list(range(n_layers)) if layers is None else list(layers)
    if latin_langs is None:
        latin_langs = [lang for lang in langs if SCRIPTS.get(lang) == "Latin"]
    latin_langs = [lang for lang in langs if lang in set(latin_langs)]

    variants = {"lang_id_all": langs}
    if len(latin_langs) >= 2:
        variants["lang_id_latin"] = latin_langs
    setups = {}
    for probe, subset in variants.items():
        li = [langs.index(lang) for lang in subset]
        y = np.repeat(np.arange(len(li)), n_sent)
        groups = np.tile(np.asarray(ids, dtype=object), len(li))
        toks = [token_ids[i][s] for i in li for s in range(n_sent)]
        setups[probe] = (li, y, groups, control_labels(toks, y, len(li), seed), group_folds(groups, n_splits, seed))

    pair_list = list(dict.fromkeys(default_pairs(langs) + parse_pairs(pairs, langs, what="retrieval pair")))
    rows = []
    # One BLAS/OpenMP thread: these problems are small (~1000 x d), and thread pools
    # oversubscribed next to torch's made each fit about 30x slower on a busy CPU.
    with threadpool_limits(1):
        for k, layer in enumerate(tqdm(layers, desc="probes", unit="layer", disable=not progress)):
            rows.extend(_layer_rows(reps, k, layer, langs, n_sent, setups, pair_list, C, seed, n_boot))
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _layer_rows(reps, k, layer, langs, n_sent, setups, pair_list, C, seed, n_boot) -> list[dict]:
    """The rows of one layer (entry ``k`` on the layer axis of ``reps``)."""
    rows = []
    for probe, (li, y, groups, ctrl, folds) in setups.items():
        X = reps[li, :, k].reshape(len(li) * n_sent, -1)
        rows.append({"layer": layer, "probe": probe, "metric": "accuracy",
                     **lang_id_scores(X, y, ctrl, groups, folds, C, seed, n_boot)})
    for a, b in pair_list:
        for row in retrieval_scores(reps[langs.index(a), :, k], reps[langs.index(b), :, k], seed, n_boot):
            rows.append({"layer": layer, "probe": "retrieval", "lang_pair": f"{a}-{b}", **row})
    return rows


def run_probes(
    lm,
    sentences: dict[str, Sequence[str]],
    pairs=None,
    layers: Iterable[int] | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    ids: Sequence | None = None,
    batch_size: int = 16,
    C: float = DEFAULT_C,
    n_splits: int = 5,
    n_boot: int = 200,
) -> pd.DataFrame:
    """All probes for ``lm`` on parallel ``sentences`` (lang -> sentences aligned by index).

    ``ids`` are the sentence ids (the groups of the train/test split; default
    their index). The Latin-script subset is read from the text
    (:func:`latin_languages`). Returns the tidy table written as ``probes.csv``.
    """
    langs, n = _check_sentences(sentences)
    if ids is not None and len(ids) != n:
        raise DataError(f"{len(ids)} sentence ids for {n} sentences per language.")
    out = sentence_representations(lm, sentences, layers, batch_size, progress)
    return probe_table(out.reps, out.langs, out.token_ids, ids, out.layers, pairs,
                       latin_languages(sentences), seed, C, n_splits, n_boot, progress)


def probe_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per layer: language-ID accuracy and selectivity, and mean retrieval over pairs."""
    out = pd.DataFrame(index=sorted(table["layer"].unique()))
    out.index.name = "layer"
    for probe in ("lang_id_all", "lang_id_latin"):
        part = table[table["probe"] == probe].set_index("layer")
        if len(part):
            out[probe] = part["value"]
            out[f"{probe}_control"] = part["control"]
            out[f"{probe}_sel"] = part["selectivity"]
    ret = table[table["probe"] == "retrieval"]
    for metric in ("accuracy", "accuracy_uncentred", "cos_margin"):
        part = ret[ret["metric"] == metric]
        if len(part):
            out[f"retrieval_{metric}" if metric != "accuracy" else "retrieval"] = part.groupby("layer")["value"].mean()
    return out.reset_index()


__all__ = [
    "COLUMNS", "SentenceReps", "sentence_representations", "pooling_weights", "latin_languages", "group_folds",
    "control_labels", "probe_predictions", "majority_predictions", "bootstrap_ci", "lang_id_scores",
    "retrieval_per_item", "retrieval_scores", "default_pairs", "probe_table", "run_probes",
    "probe_summary",
]
