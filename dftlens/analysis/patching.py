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
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.languages import native_name
from ..data.parallel import load_words
from ..data.prompts import PromptItem, translation_items
from ..errors import DataError
from ..io import output_dir, write_csv, write_json
from ..models import Edit, LensModel
from .patch_config import N_DEMOS, PatchConfig, check_config, check_words
from .patch_evidence import CONCEPT_COLUMNS, causal_evidence, summarise_patching
from .token_sets import TokenSets

OUTPUTS = ["patching.csv", "patching_items.csv", "report.html", "config.json", "figures"]


# ---- the batched sweep ------------------------------------------------------

Readout = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def patch_sweep(lm: LensModel, texts: list[str], latents: torch.Tensor, layers: list[int],
                readout: Readout, positions: torch.Tensor | None = None, cumulative: bool = False,
                rows_per_pass: int = 72, prefix_cache: bool = True, progress: bool = False,
                desc: str = "patching") -> torch.Tensor:
    """Patch each target prompt at every layer in ``layers``, as rows of few forward passes.

    ``texts``: P target prompts. ``latents`` [P, n_layers, d_model]: the value
    written at ``blocks.{l}.hook_resid_post`` of prompt p is ``latents[p, l]``.
    ``positions`` [P]: the position written (negative: counted back from the last
    real token, -1 = last); None = the last token. ``cumulative``: the row for layer
    j is patched at every layer j..L-1 (mean-latent patching), else at j only.
    ``readout(log_probs [R, vocab], prompt index [R]) -> [R, q]`` reduces each
    row's next-token distribution. Returns [P, len(layers), q].

    The rows of one prompt differ only from the first patched position on (the
    model is causal), so with ``prefix_cache`` the tokens before it run once per
    prompt and their KV cache is shared by that prompt's rows: a pass costs about
    P prompts plus P x layers x (a few tokens), not P x layers whole prompts.
    ``prefix_cache=False`` runs every row in full (the reference in the tests).
    """
    n_l = len(layers)
    per_pass = max(1, rows_per_pass // n_l)
    last = lm.hook_name(lm.n_layers - 1)
    tail = 1 if positions is None else int((-positions).max())  # tokens from the first patched one to the end
    if positions is not None and int(positions.max()) >= 0:
        raise ValueError("patch_sweep positions must be negative (counted back from the last token)")
    out = []
    for start in tqdm(range(0, len(texts), per_pass), desc=desc, disable=not progress, leave=False):
        prompts = list(range(start, min(start + per_pass, len(texts))))
        row_prompt = torch.tensor(prompts).repeat_interleave(n_l)  # [R]
        row_layer = torch.tensor(layers).repeat(len(prompts))  # [R]
        batch = lm.tokenize([texts[p] for p in prompts], padding_side="left")
        if prefix_cache and batch["input_ids"].shape[1] > tail:
            batch = _shared_prefix(lm, batch, tail, n_l)
        else:
            batch = {k: v.repeat_interleave(n_l, dim=0) for k, v in batch.items()}
        edits = []
        for layer in sorted(set(layers)) if not cumulative else range(min(layers), lm.n_layers):
            rows = torch.nonzero(row_layer <= layer if cumulative else row_layer == layer).flatten()
            pos = "last" if positions is None else positions[row_prompt[rows]]
            value = latents[row_prompt[rows], layer].to(lm.device)
            edits.append(Edit(lm.hook_name(layer), value, positions=pos, rows=rows.to(lm.device)))
        cap = lm.intervene(batch, edits, names=[last], positions="last")
        logp = lm.log_probs(cap[last]).cpu()  # [R, vocab]
        out.append(readout(logp, row_prompt).reshape(len(prompts), n_l, -1))
    return torch.cat(out)


def _shared_prefix(lm: LensModel, batch: dict, tail: int, repeats: int) -> dict:
    """Run all but the last ``tail`` tokens of each (left-padded) prompt once (:meth:`LensModel.run_prefix`);
    the rows' batch: those ``tail`` tokens, repeated ``repeats`` times per prompt, continuing that prefix."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    _, prefix = lm.run_prefix({"input_ids": ids[:, :-tail], "attention_mask": mask[:, :-tail]}, positions="last")
    return prefix.repeat_rows(repeats).extend({"input_ids": ids[:, -tail:].repeat_interleave(repeats, dim=0),
                                               "attention_mask": mask.repeat_interleave(repeats, dim=0)})


@torch.no_grad()
def last_token_latents(lm: LensModel, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """[len(texts), n_layers, d_model]: each prompt's last-token ``resid_post`` at every block."""
    names = lm.hook_names()
    chunks = []
    for start in range(0, len(texts), batch_size):
        cap = lm.capture(lm.tokenize(texts[start:start + batch_size]), names, positions="last")
        chunks.append(cap.stack(names).transpose(0, 1))
    return torch.cat(chunks)


def set_masses(sets_per_prompt: list[list[frozenset[int]]]) -> Readout:
    """Readout: probability mass of each prompt's token sets -> [R, n_sets]."""
    def readout(logp: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        probs = logp.exp()
        return torch.stack([
            torch.stack([probs[r, sorted(s)].sum() if s else probs.new_zeros(()) for s in sets_per_prompt[p]])
            for r, p in enumerate(prompt.tolist())
        ])
    return readout


def top1_in(sets_per_prompt: list[list[frozenset[int]]]) -> Readout:
    """Readout: whether the argmax token is in each set (1.0/0.0), plus the set masses."""
    masses = set_masses(sets_per_prompt)

    def readout(logp: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        top = logp.argmax(-1).tolist()
        hits = torch.tensor([[float(top[r] in s) for s in sets_per_prompt[p]] for r, p in enumerate(prompt.tolist())])
        return torch.cat([hits, masses(logp, prompt)], dim=1)
    return readout


# ---- prompts and pairs ------------------------------------------------------

def _tail(item: PromptItem) -> str:
    return f'" - {native_name(item.target_lang)}: "'


def cut_at_word(item: PromptItem) -> str:
    """The prompt ending right after the word to translate (their ``cut_at_obj``)."""
    return item.prompt[: -len(_tail(item))]


def word_position(lm: LensModel, item: PromptItem) -> int | None:
    """Negative position of the word's last token in the full prompt (their ``get_obj_id``).

    Found from the tokenizer's character offsets; None when the word's last token
    also covers the closing quote (the tokenizer merged them).
    """
    end = len(cut_at_word(item))  # character just after the word
    enc = lm.tokenizer(item.prompt, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    for i, (start, stop) in enumerate(offsets):
        if start < end <= stop:
            return i - len(offsets) if stop == end else None
    return None


def _items(words, pair: tuple[str, str], seed: int) -> dict[str, PromptItem]:
    return {it.item_id: it for it in translation_items(words, pair[0], pair[1], n_demos=N_DEMOS, seed=seed)}


def _collision_ids(token_sets: TokenSets):
    """The ids that decide whether two words collide: prefix sets leave byte-fallback tokens out
    (see :mod:`.token_sets`); first-token sets keep every id, as Dumas et al.'s
    ``has_no_collisions`` does."""
    return token_sets.ids if token_sets.kind == "first" else token_sets.ordinary_ids


def _union(ids, words) -> frozenset[int]:
    """The union of ``ids(word)`` over a concept's words (its synonyms, when the file lists them)."""
    return frozenset().union(*(ids(w) for w in words))


def concept_pairs(words, source: tuple[str, str], target: tuple[str, str], token_sets: TokenSets,
                  n_pairs: int, seed: int) -> list[dict]:
    """Up to ``n_pairs`` (A, B) pairs, A != B, whose four answer-token sets are disjoint
    (byte-fallback tokens aside for prefix sets). A set covers every synonym of the word when
    the words file lists them (Dumas et al.'s files), as their code does."""
    src, tgt = _items(words, source, seed), _items(words, target, seed)
    ids = list(words.ids)
    combos = [(a, b) for a in ids for b in ids if a != b]
    random.Random(f"{seed}-concept-{source}-{target}").shuffle(combos)
    key = _collision_ids(token_sets)
    pairs = []
    for a, b in combos:
        answers = [(a, target[1]), (a, source[1]), (b, target[1]), (b, source[1])]
        sets = [_union(token_sets.ids, words.words_of(c, lang)) for c, lang in answers]
        plain = [_union(key, words.words_of(c, lang)) for c, lang in answers]
        if any(not s for s in sets) or sum(len(s) for s in plain) != len(frozenset().union(*plain)):
            continue
        pairs.append({"a": a, "b": b, "source": src[a].prompt, "target": tgt[b].prompt, "sets": sets})
        if len(pairs) >= n_pairs:
            break
    return pairs


def mean_pairs(lm: LensModel, words, sources: list[tuple[str, str]], target: tuple[str, str],
               token_sets: TokenSets, n_pairs: int, seed: int) -> list[dict]:
    """Up to ``n_pairs`` (A, B) pairs for mean-latent patching (A's and B's Y' sets disjoint)."""
    src = [_items(words, pair, seed) for pair in sources]
    tgt = _items(words, target, seed)
    ids = list(words.ids)
    combos = [(a, b) for a in ids for b in ids if a != b]
    random.Random(f"{seed}-mean-{sources}-{target}").shuffle(combos)
    position: dict[str, int | None] = {}
    key = _collision_ids(token_sets)
    pairs = []
    for a, b in combos:
        sa, sb = (_union(token_sets.ids, words.words_of(c, target[1])) for c in (a, b))
        if not sa or not sb or _union(key, words.words_of(a, target[1])) & _union(key, words.words_of(b, target[1])):
            continue
        if b not in position:
            position[b] = word_position(lm, tgt[b])
        if position[b] is None:
            continue
        pairs.append({"a": a, "b": b, "sources": [cut_at_word(s[a]) for s in src], "target": tgt[b].prompt,
                      "own": tgt[a].prompt, "position": position[b], "sets": [sa, sb]})
        if len(pairs) >= n_pairs:
            break
    return pairs


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


# ---- result -----------------------------------------------------------------

@dataclass
class PatchResult:
    """What :func:`run_patching` measured (``dftlens patch``).

    Fields: ``model``, ``n_layers``, ``config``, ``items`` (one row per pair and layer,
    ``patching_items.csv``), ``table`` (means with 95% CIs per experiment and layer,
    ``patching.csv``), ``causal`` (the evidence :func:`causal_evidence` read from ``table``).
    """

    model: str
    n_layers: int
    config: PatchConfig
    items: pd.DataFrame  # one row per pair and layer (patching_items.csv)
    table: pd.DataFrame  # means with CIs (patching.csv)
    causal: dict

    def save(self, out: str | Path, overwrite: bool = False, report: bool = True,
             extra: Callable[[Path], object] | None = None, figure_formats: list[str] | str | None = None) -> Path:
        """Write the outputs into ``out`` at once; ``extra(tmp_dir)`` may add ``run_config.yaml``; with
        ``figure_formats`` (png/svg/pdf) also ``out/figures/patch-<model>-<experiment>-<src>-into-<tgt>.<fmt>``."""
        from ..viz.export import parse_formats, save_figures
        from ..viz.patch_figures import patch_figures

        formats = parse_formats(figure_formats)  # refuse a bad format before writing anything
        with output_dir(out, [*OUTPUTS, "run_config.yaml"], overwrite) as tmp:  # every file at once, or none
            if extra is not None:  # e.g. the CLI's run_config.yaml
                extra(tmp)
            write_csv(tmp / "patching_items.csv", self.items)
            if report:
                from ..viz.patch_figures import write_patch_report

                write_patch_report(tmp / "report.html", self.table, self.causal,
                                   title=f"dftlens patch: {self.model}", model=self.model)
            if formats:
                save_figures(patch_figures(self.table, self.model), tmp / "figures", formats)
            write_json(tmp / "config.json", asdict(self.config))
            write_csv(tmp / "patching.csv", self.table)  # last: its presence means the run completed
        return Path(out).expanduser()


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
