"""The batched patching sweep: every layer of a prompt as rows of few forward passes, and its readouts.

:func:`patch_sweep` writes a latent into each target prompt at every layer asked for (one
layer per row, or every layer from it on), each row patched through
``LensModel.intervene``; the tokens before the first patched position run once per prompt
(``LensModel.run_prefix``) and the rows continue from their keys and values.
:func:`last_token_latents` reads the latents; :func:`set_masses` and :func:`top1_in` are the
readouts of Dumas et al. (2025) (:mod:`.patching` runs their experiments with them).
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from ..models import Edit, LensModel

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
