"""Language activation probability entropy (LAPE): Tang et al., ACL 2024 (arXiv 2402.16438).

Ported from their code (RUCAIBox/Language-Specific-Neurons): ``activation.py`` counts, per
layer and MLP hidden unit, the tokens of a language on which the unit is active (the
activation function's output > 0: act(gate) for gated MLPs, see
:mod:`dftlens.models.mlp_layout`); ``identify.py`` turns the counts into probabilities,
entropies and the language-specific selection:

1. ``p[l, i, k]`` = active tokens / tokens of language k (:class:`ActivationStats`);
2. LAPE entropy of ``p[l, i, :] / sum_k p[l, i, k]`` (natural log; 0 log 0 = 0);
3. a unit is dismissed (entropy +inf) unless some language's probability exceeds the
   ``filter_rate`` quantile (k-th smallest, k = round(filter_rate * count)) of all ``p``;
4. candidates: the ``round(top_rate * L * N)`` units of lowest entropy;
5. a candidate is specific to each language whose ``p`` exceeds the ``activation_bar_ratio``
   quantile of all ``p`` (empty when none: it is kept in the table with no language).

Counting is streaming: per batch, forward hooks on each layer's "active" module and the
down projection's input add to ``[L, N, K]`` counters (plus the sum of the hidden unit over
its active tokens, for steering); no activation of the corpus is kept. Tokens: every real
token of a sentence except a leading BOS (Tang et al. count a concatenated corpus, where the
one BOS does not matter; here each sentence has one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DftlensError
from ..models.mlp_layout import act_module, d_mlp, down_module
from .sentence_reps import pooling_weights


@dataclass
class ActivationStats:
    """Counts over a corpus: ``active[l, i, k]`` active tokens, ``tokens[k]`` tokens of language k.

    ``post_sum[l, i, k]``: the sum of hidden unit i's value (``blocks.{l}.mlp.hook_post``) over
    the tokens where it is active, so ``mean_active = post_sum / active``. Arrays are float64
    numpy, ``[L, N, K]`` and ``[K]``; ``langs`` names axis K.
    """

    active: np.ndarray
    tokens: np.ndarray
    post_sum: np.ndarray
    langs: list[str]

    @property
    def probs(self) -> np.ndarray:
        """Activation probabilities ``[L, N, K]``: active tokens / tokens of the language."""
        return self.active / self.tokens

    @property
    def mean_active(self) -> np.ndarray:
        """Mean hidden-unit value where active ``[L, N, K]`` (0 where never active)."""
        return np.divide(self.post_sum, self.active, out=np.zeros_like(self.post_sum), where=self.active > 0)


class _Counter:
    """Forward hooks that add one batch's active counts to the ``[L, N]`` counters of one language."""

    def __init__(self, hf_model, n_layers: int, device):
        self.layers = range(n_layers)
        width = d_mlp(hf_model)
        self.active = torch.zeros(n_layers, width, dtype=torch.float64, device=device)
        self.post_sum = torch.zeros(n_layers, width, dtype=torch.float64, device=device)
        self.weights: torch.Tensor | None = None  # [b, t] 1 on counted tokens
        self._mask: dict[int, torch.Tensor] = {}
        acts = [act_module(hf_model, layer) for layer in self.layers]
        if len({id(m) for m in acts}) != n_layers:
            raise DftlensError("The model shares one activation module between layers; its neurons cannot be "
                               "counted per layer.")
        self.handles = [m.register_forward_hook(self._on_act(layer)) for layer, m in zip(self.layers, acts)]
        self.handles += [down_module(hf_model, layer).register_forward_pre_hook(self._on_post(layer))
                         for layer in self.layers]

    def _on_act(self, layer: int):
        def hook(module, args, output):
            on = (output > 0).to(output.dtype) * self.weights.to(output.device, output.dtype).unsqueeze(-1)
            self._mask[layer] = on
            self.active[layer] += on.sum(dim=(0, 1)).to(self.active.device, torch.float64)
        return hook

    def _on_post(self, layer: int):
        def hook(module, args):
            post = args[0]
            total = torch.einsum("btn,btn->n", post.float(), self._mask.pop(layer).float())
            self.post_sum[layer] += total.to(self.post_sum.device, torch.float64)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def activation_stats(lm, sentences: dict[str, list[str]], batch_size: int = 16, max_length: int = 128,
                     progress: bool = True) -> ActivationStats:
    """Count active tokens per layer, hidden unit and language over ``sentences`` ({lang: texts}).

    One bare forward pass per batch (``logits_to_keep=1``) with the counting hooks; memory
    O(L x N x K). Raises DataError for a sentence with no token besides BOS.
    """
    from tqdm.auto import tqdm

    langs = list(sentences)
    L, N = lm.n_layers, d_mlp(lm.hf_model)
    active, post_sum = np.zeros((L, N, len(langs))), np.zeros((L, N, len(langs)))
    tokens = np.zeros(len(langs))
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    bar = tqdm(total=sum(len(v) for v in sentences.values()), desc="neuron statistics", unit="sent",
               disable=not progress)
    counter = _Counter(lm.hf_model, L, lm.device)
    try:
        for k, lang in enumerate(langs):
            counter.active.zero_(), counter.post_sum.zero_()
            texts = sorted(sentences[lang], key=len)
            for start in range(0, len(texts), batch_size):
                batch = lm.tokenize(texts[start:start + batch_size], padding_side="right", max_length=max_length)
                counter.weights = pooling_weights(batch["input_ids"], batch["attention_mask"], bos)
                lm.hf_model(**lm.model_inputs(batch), logits_to_keep=1)
                tokens[k] += float(counter.weights.sum())
                bar.update(len(batch["input_ids"]))
            active[:, :, k], post_sum[:, :, k] = counter.active.cpu().numpy(), counter.post_sum.cpu().numpy()
    finally:
        counter.remove()
        bar.close()
    if not np.isfinite(post_sum).all():
        raise DftlensError("The hidden activations have non-finite values (NaN or inf); the model or its dtype "
                           "cannot be measured this way (try --dtype float32).")
    return ActivationStats(active, tokens, post_sum, langs)


def lape_entropy(probs: np.ndarray) -> np.ndarray:
    """LAPE ``[L, N]`` of activation probabilities ``[L, N, K]`` (Tang et al.'s ``identify.py``)."""
    total = probs.sum(axis=-1, keepdims=True)
    normed = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
    logs = np.log(normed, out=np.zeros_like(normed), where=normed > 0)
    return -(normed * logs).sum(axis=-1)


def kth_smallest(values: np.ndarray, ratio: float) -> float:
    """``torch.kthvalue(values.flatten(), round(len * ratio))``: the 1-based k-th smallest value."""
    flat = np.sort(values.ravel())
    k = min(max(int(round(len(flat) * ratio)), 1), len(flat))
    return float(flat[k - 1])


@dataclass
class Selection:
    """Tang et al.'s selection: candidates ``(layer, neuron)`` and the languages each is specific to.

    ``layer``/``neuron``: int arrays ``[C]`` (sorted); ``specific``: bool ``[C, K]``; ``entropy``
    ``[L, N]`` (+inf for dismissed units); ``filter_value``/``activation_bar``: the two quantiles.
    """

    layer: np.ndarray
    neuron: np.ndarray
    specific: np.ndarray
    entropy: np.ndarray
    filter_value: float
    activation_bar: float


def select_neurons(probs: np.ndarray, top_rate: float = 0.01, filter_rate: float = 0.95,
                   activation_bar_ratio: float = 0.95) -> Selection:
    """Language-specific neurons from activation probabilities ``[L, N, K]`` (steps 2-5 above)."""
    entropy = lape_entropy(probs)
    filter_value = kth_smallest(probs, filter_rate)
    entropy = np.where((probs > filter_value).sum(axis=-1) == 0, np.inf, entropy)
    n = int(round(entropy.size * top_rate))
    # torch.topk(largest=False) order: lowest entropy first; a stable sort makes ties reproducible.
    index = np.argsort(entropy.ravel(), kind="stable")[:n]
    index = np.sort(index)
    layer, neuron = np.unravel_index(index, entropy.shape)
    bar = kth_smallest(probs, activation_bar_ratio)
    specific = probs[layer, neuron] > bar
    return Selection(layer.astype(int), neuron.astype(int), specific, entropy, filter_value, bar)


def neuron_sets(selection: Selection, langs: list[str]) -> dict[str, dict[int, np.ndarray]]:
    """``{lang: {layer: neuron indices}}`` of the language-specific neurons (layers with none omitted)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for k, lang in enumerate(langs):
        rows = selection.specific[:, k]
        layers = selection.layer[rows]
        out[lang] = {int(l): selection.neuron[rows][layers == l] for l in np.unique(layers)}
    return out


__all__ = ["ActivationStats", "Selection", "activation_stats", "lape_entropy", "kth_smallest", "select_neurons",
           "neuron_sets"]
