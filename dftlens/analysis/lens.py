"""The logit lens at the last position of prompts, for every layer.

:func:`lens_table` (``dftlens lens``, ``dftlens.lens_table``): one prompt, one call,
one row per layer::

    import dftlens
    lm = dftlens.load_model("gemma3-270m")
    table = dftlens.lens_table(lm, 'Français: "eau" - 日本語: "', answers={"en": "water", "ja": "水"})
    table[["layer", "p_en", "p_ja", "entropy_bits", "top_tokens"]]

:func:`measure` (``dftlens probe``), per item and layer: P(English answer), P(target answer), P(input-language word)
(Wendler's token-prefix sets), entropy in bits, the top tokens, and the MWork-style
share of the top-k tokens that are English / target / other. Only the last real
position is decoded: the forward pass stops after the last block (the model's own
head never runs) and the lens decodes one position per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config_files import check_fields, setting
from ..data.prompts import PromptItem
from ..errors import DataError
from ..models import LensModel
from ..models.name_resolution import check_top_k
from ..models.lens_kernel import reduce_logits
from .lens_rows import SHARES, batch_rows, item_set_tensors, pad_sets
from .token_sets import OVERLAP_POLICIES, TokenSets

PROB_COLUMNS = ["p_en", "p_target", "p_input"] + [f"share_{c}" for c in SHARES]
ITEM_COLUMNS = PROB_COLUMNS + ["entropy_bits"]


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits of distributions given as log-probabilities (natural log) over
    the last dimension: ``[..., vocab] -> [...]``. Zero-probability entries count 0 (no NaN
    from ``0 * -inf``); a NaN in ``logp`` stays NaN (never 0 bits). The lens kernel's entropy
    (:class:`~dftlens.models.lens_kernel.RunningLens`, the one of dftlens: the probe,
    ``lens_table`` and the in-trace lens all compute it there), for log-probabilities at hand."""
    flat = logp.float().reshape(-1, logp.shape[-1]).clamp(min=-1e30)  # exp -> 0 and 0 * -1e30 = 0, not NaN
    return reduce_logits(flat).entropy_bits.reshape(logp.shape[:-1])


@torch.no_grad()
def measure(lm: LensModel, items: list[PromptItem], token_sets: TokenSets, batch_size: int = 16,
            top_k: int = 10, show_tokens: int = 3, progress: bool = True, desc: str = "logit lens",
            policy: str = "exclusive") -> pd.DataFrame:
    """One row per item and layer (see ITEM_COLUMNS and :func:`~dftlens.analysis.lens_rows.lens_row`), plus ``correct``:
    whether the item's top-1 lens token at the LAST layer is in its target-language token set
    (the model starts the right word), repeated on every layer's row of that item.

    ``policy``: the overlap policy of the item's token sets
    (:data:`~dftlens.analysis.token_sets.OVERLAP_POLICIES`); the ``p_en_<policy>`` columns
    give P(en) under each policy from the same forward pass.

    Per batch, one forward pass (stopped after the last block) captures every layer's
    residual at the last real token, and :meth:`~dftlens.models.LensModel.lens_reduce`
    decodes all ``layers x batch`` rows in one pass over the vocabulary (the head read once
    per batch; no full log-probability rows are kept). An nnsight engine with
    ``lens_in_trace`` runs the same kernel inside the trace (:mod:`.lens_in_trace`)."""
    names = lm.hook_names()
    rows = []
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="prompt", leave=False)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        if lm.lens_in_trace:  # nnsight/NDIF: the whole measurement inside the trace
            from .lens_in_trace import stats_in_trace

            stats, top_ids = stats_in_trace(lm, chunk, token_sets, top_k, policy=policy)
        else:
            batch = lm.tokenize([it.prompt for it in chunk], labels=[it.label for it in chunk])
            resid = lm.capture(batch, names, positions="last").stack(names)  # [layers, batch, d]
            n_layers, n_items = resid.shape[:2]
            ids, weights = item_set_tensors(token_sets, chunk, policy)  # [batch, sets, K], the same every layer
            red = lm.lens_reduce(resid.reshape(n_layers * n_items, -1), ids.repeat(n_layers, 1, 1),
                                 weights.repeat(n_layers, 1, 1), top_k)
            stats = torch.cat([red.masses, red.entropy_bits[:, None]], dim=1).reshape(n_layers, n_items, -1)
            top_ids = red.top_ids.reshape(n_layers, n_items, -1)
        rows.extend(batch_rows(lm.tokenizer, chunk, stats.cpu(), top_ids.cpu(), token_sets, show_tokens, policy))
        bar.update(len(chunk))
    bar.close()
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    keys = ["task", "input_lang", "target_lang", "item_id"]
    last = frame[frame["layer"] == frame["layer"].max()].set_index(keys)["top1_target"]
    frame["correct"] = [bool(last.get(k, False)) for k in frame[keys].itertuples(index=False, name=None)]
    return frame.drop(columns="top1_target")


# Wendler et al.'s translation format with four demonstrations.
_DEMOS = [("livre", "书"), ("chien", "狗"), ("fleur", "花"), ("lune", "月亮")]


@dataclass
class LensTableConfig:
    """What `dftlens lens` reads: one prompt (or the built-in fr->zh one) and its answers.

    ``answers()`` maps column names to words for :func:`lens_table`: ``en`` (``p_en``)
    and ``target`` (``p_target``); the prompt is checked before any model loads.
    """

    prompt: str | None = setting(None, "Your own prompt; the lens reads the position after its last token "
                                       "(end it where the answer starts).")
    answer: str | None = setting(None, "The expected answer word in the target language (column p_target).")
    answer_en: str | None = setting(None, "Its English version (column p_en).")
    word: str = setting("eau", "Without --prompt: the French word of the built-in fr->zh prompt (p_en and "
                               "p_target from its row of the bundled words unless --answer-en/--answer).")
    top_k: int = setting(3, "Top tokens shown per layer.")
    overlap: str = setting("exclusive", "When two answers' token sets share a token: exclusive (remove it from both), "
                                        "drop (refuse the prompt) or keep (keep the sets whole).",
                           choices=OVERLAP_POLICIES)

    def __post_init__(self) -> None:
        """Finite numbers and choices (:func:`check_fields`), a non-empty prompt, ``top_k`` of at least 1."""
        check_fields(self)
        if self.prompt is not None and not self.prompt.strip():
            raise DataError("--prompt is empty; give the text the model should continue.")
        if self.top_k < 1:
            raise DataError(f"--top-k must be at least 1, not {self.top_k}.")

    def text(self) -> str:
        """The prompt the lens runs on."""
        return self.prompt if self.prompt is not None else translation_prompt(self.word)

    def answers(self) -> dict[str, str]:
        """Column name -> answer word, for :func:`lens_table`.

        With the built-in prompt (no ``prompt``), a ``word`` found in the bundled words'
        French column supplies the defaults: its English and Chinese words (``eau``:
        ``water``, ``水``); ``answer_en``/``answer`` override them.
        """
        en, target = self.answer_en, self.answer
        if self.prompt is None:
            from ..data.parallel import load_words

            words = load_words(languages=["fr", "en", "zh"])
            row = next((r for r in words.rows if r["fr"] == self.word), None)
            if row is not None:
                en, target = en or row["en"], target or row["zh"]
        return {k: v for k, v in (("en", en), ("target", target)) if v}


def translation_prompt(word: str) -> str:
    """A fr->zh translation prompt for ``word`` with four demonstrations (``dftlens lens --word``)."""
    shots = "\n".join(f'Français: "{fr}" - 中文: "{zh}"' for fr, zh in _DEMOS if fr != word)
    return f'{shots}\nFrançais: "{word}" - 中文: "'


@torch.no_grad()
def answer_ids(token_sets: TokenSets, answers: Mapping[str, str], overlap: str = "exclusive") -> dict[str, frozenset[int]]:
    """Each answer's token set for a one-prompt table under an overlap policy: ``exclusive``
    removes every ordinary token two answers share from both (byte-fallback tokens never
    count, :mod:`.token_sets`), ``drop`` refuses answers that share one, ``keep`` keeps the
    sets whole.

    Raises:
        DataError: an answer without any token (its probability would be a meaningless 0), one
            left without a token of its own under ``exclusive``, or shared tokens under ``drop``.
    """
    ids = {}
    for name, word in answers.items():
        ids[name] = token_sets.ids(word)
        if not ids[name]:
            raise DataError(f"No token of the vocabulary starts the answer {word!r} ({name}); check the word.")
    names = list(answers)
    shared = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = token_sets.ordinary_ids(answers[a]) & token_sets.ordinary_ids(answers[b])
            if common and overlap == "drop":
                raise DataError(f"The answers {answers[a]!r} ({a}) and {answers[b]!r} ({b}) share a token; the lens "
                                "cannot tell them apart (use --overlap exclusive or keep).")
            shared |= common
    if overlap == "exclusive":
        for name in names:
            ids[name] = ids[name] - shared
            if not ids[name]:
                raise DataError(f"Every token that starts {answers[name]!r} ({name}) also starts another answer; "
                                "use --overlap keep to count them for both.")
    return ids


def lens_table(lm: LensModel, prompt: str, answers: Mapping[str, str] | None = None,
               top_k: int = 3, overlap: str = "exclusive") -> pd.DataFrame:
    """The logit lens at the last position of one prompt, one row per layer.

    Args:
        lm: a loaded model (``dftlens.load_model``).
        prompt: the text; the lens reads the position after its last token, so end it
            where the answer should start (e.g. ``... 日本語: "``).
        answers: optional ``{name: word}``, e.g. ``{"en": "water", "ja": "水"}``: for each,
            a column ``p_<name>`` with the lens probability of the word's token set
            (Wendler's prefix sets, :class:`~dftlens.analysis.token_sets.TokenSets`).
        top_k: how many top tokens to show per layer.
        overlap: what to do with a token two answers' sets share (:func:`answer_ids`):
            ``exclusive`` (default) removes it from both, ``drop`` refuses, ``keep`` keeps it.

    Returns:
        DataFrame with ``n_layers`` rows (0-based block index ``layer``) and columns
        ``layer``, ``p_<name>`` per answer (probability in [0, 1]), ``entropy_bits``
        (entropy of the lens distribution, bits), ``top_tokens`` (``"'tok' 0.42  ..."``,
        the ``top_k`` tokens with their probabilities), ``top_token`` (the first of them).

    Raises:
        DataError: an answer word has no token in the vocabulary (its probability would
            be a meaningless 0), or the answers' sets collide (see :func:`answer_ids`).
    """
    ids = answer_ids(TokenSets(lm.tokenizer), dict(answers or {}), overlap)
    check_top_k(top_k, lm.name, lm.vocab_size)
    batch = lm.tokenize([prompt], labels=["the prompt"])
    names = lm.hook_names()
    cap = lm.capture(batch, names, positions="last")
    columns = list(ids)
    set_ids, set_weights = pad_sets([[ids[c] for c in columns]] * lm.n_layers)
    red = lm.lens_reduce(cap.stack(names)[:, 0], set_ids, set_weights, top_k)  # rows: layers
    masses, entropy = red.masses.cpu().tolist(), red.entropy_bits.cpu().tolist()
    top_ids, top_probs = red.top_ids.cpu().tolist(), red.top_log_probs.exp().cpu().tolist()
    rows = []
    for layer in range(lm.n_layers):
        tokens = lm.tokenizer.convert_ids_to_tokens(top_ids[layer])
        row = {"layer": layer}
        for j, name in enumerate(columns):
            row[f"p_{name}"] = float(masses[layer][j])
        row["entropy_bits"] = float(entropy[layer])
        row["top_tokens"] = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(tokens, top_probs[layer]))
        row["top_token"] = tokens[0]
        rows.append(row)
    return pd.DataFrame(rows)
