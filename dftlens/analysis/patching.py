"""Activation patching on word-translation prompts (Dumas et al., ACL 2025).

Dumas, Wendler, Veselovsky, Monea and West, "Separating Tongue from Thought:
Activation Patching Reveals Language-Agnostic Concept Representations in
Transformers" (arXiv 2411.08745; code: Butanium/llm-lang-agnostic). dftlens
follows their code's choice of prompts, positions and layers:

Prompts: their few-shot word translation format, ``Français: "fleur" - 中文: "花"``
lines (5 demonstrations, never the query concept), then ``Français: "eau" - 中文: "``.

**Concept patching** (their ``patchscope_lens``, the "shifted translation" plot).
A source prompt translates concept A from X to Y; a target prompt translates
concept B != A from X' to Y' != Y. For each layer l, the source's residual
``blocks.{l}.hook_resid_post`` at its last token (the position that predicts the
answer) overwrites the target's ``blocks.{l}.hook_resid_post`` at the target's
last token: one position, one layer, nothing else. Read at the target's output
(next-token probabilities, summed over each word's answer-token set as the probe
does, ``token_sets.TokenSets``):

- ``p_src_concept`` = P(A in Y'), ``p_src_concept_src_lang`` = P(A in Y),
- ``p_tgt_concept`` = P(B in Y'), ``p_tgt_concept_src_lang`` = P(B in Y).

Pairs whose four token sets overlap are dropped (their ``has_no_collisions``; with prefix sets
a shared byte-fallback token is no collision). ``PatchConfig.token_sets`` (``--token-sets``)
chooses the sets: ``prefix`` (Wendler et al.'s, the default) or ``first`` (Dumas et al.'s
first tokens of the word and of " word", their code's default, to reproduce their numbers).

**Mean-latent patching** (their ``object_lens`` with ``num_patches=-1``, the
"ObjPatch" plot). Source prompts translate concept A from several input
languages, cut right after the word (``...Deutsch: "Hund``); their last-token
``resid_post`` at layer l is averaged over the input languages. For each layer
j, that mean overwrites the target prompt's last token of the word being
translated (concept B, X' -> Y'), at ``resid_post`` of every layer j..L-1 (the
mean at each of those layers). Reported: top-1 translation accuracy (the argmax
next token is in A's Y' token set) patched with the mean (``acc_patched``) and
unpatched (``acc_unpatched``: the model translating A on its own X' -> Y' prompt),
plus P(A in Y') and P(B in Y'). (Their "only first" variant, one language's
latent, is not run: it costs a second sweep.)

All layers of a pair run as rows of one batch (``rows_per_pass`` rows per
forward pass), each row patched at its own layer(s) through ``LensModel.intervene``;
``test_patching`` checks that this gives the numbers of one pass per layer.

This module runs the experiments (:func:`run_patching`, :func:`run_concept`,
:func:`run_mean_latent`); the sweep and its readouts are :mod:`.patch_sweep`, the prompts
and pairs :mod:`.patch_pairs`, the result and its files :mod:`.patch_result`.
"""

from __future__ import annotations

import pandas as pd
import torch

from ..data.parallel import load_words
from ..errors import DataError
from ..models import LensModel
from .patch_config import PatchConfig, check_config, check_words
from .patch_evidence import CONCEPT_COLUMNS, causal_evidence, summarise_patching
from .patch_pairs import concept_pairs, mean_pairs
from .patch_result import PatchResult
from .patch_sweep import Readout, last_token_latents, patch_sweep, set_masses, top1_in
from .token_sets import TokenSets

# ---- the experiments --------------------------------------------------------

def _pair_label(pair) -> str:
    return f"{pair[0]}->{pair[1]}"


def run_concept(lm: LensModel, words, source, target, layers, token_sets, config: PatchConfig,
                progress: bool = True) -> pd.DataFrame:
    """Concept patching (Dumas et al. 2025) of ``source`` (X, Y) into ``target`` (X', Y') at ``layers``.

    For each of up to ``config.n_pairs`` concept pairs (A, B), the source prompt's last-token
    ``resid_post`` at layer l overwrites the target prompt's at layer l and its last token,
    one layer per row. Returns one row per pair and layer: ``experiment``, ``source``,
    ``target``, ``a``, ``b``, ``layer`` and the probabilities of :data:`CONCEPT_COLUMNS`
    (next-token mass on each word's answer-token set, 0..1).

    Raises:
        DataError: no pair of words has four disjoint answer-token sets.
    """
    pairs = concept_pairs(words, source, target, token_sets, config.n_pairs, config.seed)
    if not pairs:
        raise DataError(f"No concept pairs for {_pair_label(source)} into {_pair_label(target)}: every pair's "
                        "answer tokens overlap; use other languages or more words.")
    latents = last_token_latents(lm, [p["source"] for p in pairs])
    values = patch_sweep(lm, [p["target"] for p in pairs], latents, layers, set_masses([p["sets"] for p in pairs]),
                         rows_per_pass=config.rows_per_pass, progress=progress, desc="concept patching")
    rows = []
    for i, pair in enumerate(pairs):
        for k, layer in enumerate(layers):
            rows.append({"experiment": "concept", "source": _pair_label(source), "target": _pair_label(target),
                         "a": pair["a"], "b": pair["b"], "layer": layer,
                         **{c: float(values[i, k, j]) for j, c in enumerate(CONCEPT_COLUMNS)}})
    return pd.DataFrame(rows)


def run_mean_latent(lm: LensModel, words, sources, target, layers, token_sets, config: PatchConfig,
                    progress: bool = True) -> pd.DataFrame:
    """Mean-latent patching (Dumas et al. 2025): A's latent, averaged over ``sources``, into ``target``.

    For each of up to ``config.n_pairs`` pairs (A, B), the mean over the source languages of
    A's last-token ``resid_post`` (word cut after A) replaces the target prompt's word
    position at every layer from l to the last (one row per l in ``layers``). Returns one row
    per pair and layer: ``acc_patched`` / ``acc_unpatched`` (1.0 or 0.0: the top-1 next token
    is in A's Y' token set, patched / on A's own X' -> Y' prompt) and ``p_src_concept``,
    ``p_tgt_concept`` (probabilities of A and B in Y').

    Raises:
        DataError: no usable pair (answer tokens overlap, or the tokenizer merges the word
            with its quotes).
    """
    pairs = mean_pairs(lm, words, sources, target, token_sets, config.n_pairs, config.seed)
    if not pairs:
        raise DataError(f"No mean-latent pairs for {_pair_label(target)}: the answer tokens overlap or the "
                        "tokenizer merges the word with its quotes; use other languages or more words.")
    n_src = len(sources)
    flat = last_token_latents(lm, [s for p in pairs for s in p["sources"]])  # [P * n_src, L, d]
    flat = flat.reshape(len(pairs), n_src, lm.n_layers, -1)
    texts = [p["target"] for p in pairs]
    positions = torch.tensor([p["position"] for p in pairs])
    readout = top1_in([p["sets"] for p in pairs])  # [hit A, hit B, P(A), P(B)]
    kw = dict(positions=positions, cumulative=True, rows_per_pass=config.rows_per_pass, progress=progress)
    mean = patch_sweep(lm, texts, flat.mean(1), layers, readout, desc="mean-latent patching", **kw)
    # Unpatched: the model translating A itself on its own X' -> Y' prompt.
    own = _unpatched(lm, [p["own"] for p in pairs], readout, config.rows_per_pass)
    rows = []
    for i, pair in enumerate(pairs):
        for k, layer in enumerate(layers):
            rows.append({"experiment": "mean_latent", "source": "+".join(_pair_label(s) for s in sources),
                         "target": _pair_label(target), "a": pair["a"], "b": pair["b"], "layer": layer,
                         "acc_patched": float(mean[i, k, 0]),
                         "acc_unpatched": float(own[i, 0]),
                         "p_src_concept": float(mean[i, k, 2]), "p_tgt_concept": float(mean[i, k, 3])})
    return pd.DataFrame(rows)


@torch.no_grad()
def _unpatched(lm: LensModel, texts: list[str], readout: Readout, batch_size: int) -> torch.Tensor:
    last = lm.hook_name(lm.n_layers - 1)
    out = []
    for start in range(0, len(texts), batch_size):
        cap = lm.capture(lm.tokenize(texts[start:start + batch_size]), [last], positions="last")
        out.append(readout(lm.log_probs(cap[last]).cpu(), torch.arange(start, start + len(cap[last]))))
    return torch.cat(out)


def run_patching(lm: LensModel, config: PatchConfig | None = None, progress: bool = True) -> PatchResult:
    """Both experiments on ``lm``; see the module docstring for what is patched where."""
    config = config or PatchConfig()
    check_config(config, lm.n_layers)
    layers = sorted(set(config.layers)) if config.layers else list(range(lm.n_layers))
    words = load_words(config.words, config.languages())
    check_words(words)
    token_sets = TokenSets(lm.tokenizer, kind=config.token_sets)
    frames = [run_concept(lm, words, src, tgt, layers, token_sets, config, progress) for src, tgt in config.concept]
    if config.mean_target:
        frames.append(run_mean_latent(lm, words, config.mean_sources, config.mean_target, layers, token_sets,
                                      config, progress))
    items = pd.concat(frames, ignore_index=True)
    table = summarise_patching(items)
    return PatchResult(lm.name, lm.n_layers, config, items, table, causal_evidence(table))
