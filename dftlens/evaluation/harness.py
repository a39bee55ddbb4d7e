"""lm-evaluation-harness glue: an already loaded dftlens model as an lm-eval ``LM``.

:class:`DftlensHFLM` is lm-eval's own ``HFLM`` (``pretrained=`` an already loaded
``transformers`` model, ``tokenizer=`` its tokenizer), so prompts, tokenization,
batching order, caching of one-token continuations and generation are exactly
lm-eval's. One method is replaced: log-likelihood scoring asks the model for
logits only at the positions that score the continuation (``logits_to_keep``),
instead of at every position. With a 262k-token vocabulary (Gemma 3) the LM head
over every position costs more than the rest of a small model, and lm-eval would
then take a log-softmax over [batch, sequence, 262144] floats.

Requests that share a context (the choices of a multiple-choice item) also share
its forward pass: the contexts of a batch run once, left-padded, into a KV cache,
and only the continuations run after it (a continuation of one token needs no
further pass at all). Left padding keeps the distance between real tokens equal to
their position difference, so sliding-window layers see what they would see
unpadded. The scores are the same numbers as lm-eval's own path up to float
rounding (tests/evaluation/test_eval_harness.py checks this on Llama, Gemma-2 and Gemma-3
shapes); if a model's cache cannot be used this way, scoring falls back to
per-request passes with a warning.

Position ids (the left-padded positions of each row) are passed only to families
whose forward takes them (``position_ids`` in the family table of
:mod:`dftlens.models.architecture`, as capture does): BLOOM's forward has no such
argument and builds its ALiBi offsets from the attention mask, so it gets the mask
alone.
"""

from __future__ import annotations

import inspect
import logging
import warnings

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from tqdm import tqdm

from ..errors import NonFiniteError


def _takes_position_ids(model) -> bool:
    """The family table's ``position_ids`` flag for this model; for a family the table does not
    list, whether its forward names a ``position_ids`` argument."""
    from ..models.architecture import family_of

    fam = family_of(model.config)
    if fam is not None:
        return fam.position_ids
    try:
        return "position_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return True


def _accepts_logits_to_keep(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return False


class DftlensHFLM(HFLM):
    """``HFLM`` over an in-memory model whose log-likelihoods only compute the logits they use.

    ``position_ids``: whether the forward passes get position ids (default: the model
    family's flag, see :func:`_takes_position_ids`; False for BLOOM).
    """

    def __init__(self, hf_model, tokenizer, batch_size: int = 16, max_gen_toks: int | None = None,
                 position_ids: bool | None = None, **kwargs):
        """Wrap a loaded ``transformers`` causal LM and its tokenizer for lm-eval (no second load).

        ``batch_size``: requests scored per forward pass; ``max_gen_toks``: generation
        budget for generative tasks (None: lm-eval's default); ``position_ids``: pass
        explicit positions to the forward (None: from the family table); other keyword
        arguments go to lm-eval's ``HFLM``.
        """
        # lm-eval logs a warning for any model passed as an object; that is what we mean to do.
        hf_logger = logging.getLogger("lm_eval.models.huggingface")
        level = hf_logger.level
        hf_logger.setLevel(logging.ERROR)
        try:
            super().__init__(
                pretrained=hf_model,
                tokenizer=tokenizer,
                backend="causal",
                trust_remote_code=bool(getattr(hf_model, "dftlens_trust_remote_code", False)),
                batch_size=int(batch_size),
                device=str(next(hf_model.parameters()).device),
                **({"max_gen_toks": max_gen_toks} if max_gen_toks else {}),
                **kwargs,
            )
        finally:
            hf_logger.setLevel(level)
        self._sparse_logits = _accepts_logits_to_keep(self.model)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.share_context = self._sparse_logits
        self.position_ids = _takes_position_ids(self.model) if position_ids is None else bool(position_ids)

    def _positions(self, positions: torch.Tensor) -> dict:
        """``{"position_ids": positions}`` for a family that takes them, else nothing."""
        return {"position_ids": positions.to(self.device)} if self.position_ids else {}

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        if self.backend != "causal" or not self._sparse_logits:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        if self.share_context:
            try:
                return self._shared_context_tokens(requests, disable_tqdm=disable_tqdm)
            except NonFiniteError:  # NaN/inf logits: the run stops (dftlens.numerics.guard_forward)
                raise
            except Exception as exc:  # an architecture whose cache does not allow this
                warnings.warn(f"dftlens: shared-context scoring failed ({type(exc).__name__}: {exc}); "
                              "scoring each request separately instead.", RuntimeWarning, stacklevel=2)
                self.share_context = False
        return self._sparse_tokens(requests, disable_tqdm=disable_tqdm)

    # ------------------------------------------------------------------ shared contexts
    def _shared_context_tokens(self, requests, disable_tqdm: bool = False):
        n = len(requests)
        results: list[tuple[float, bool] | None] = [None] * n
        groups: dict[tuple[int, ...], list[int]] = {}
        too_long: list[int] = []
        for i, (_, context_enc, continuation_enc) in enumerate(requests):
            assert len(context_enc) > 0 and len(continuation_enc) > 0
            if len(context_enc) + len(continuation_enc) > self.max_length:
                too_long.append(i)  # lm-eval truncates these from the left: keep its path
            else:
                groups.setdefault(tuple(context_enc), []).append(i)
        bs = self.batch_size if isinstance(self.batch_size, int) else 8
        order = sorted(groups, key=lambda k: -(len(k) + max(len(requests[i][2]) for i in groups[k])))
        # Up to bs contexts, about 2*bs continuations and 16*bs continuation positions per
        # batch (each scored position holds a vocabulary-sized row of logits).
        batches: list[list[tuple[int, ...]]] = []
        rows = positions = 0
        for key in order:
            k = len(groups[key])
            p = sum(len(requests[i][2]) - 1 for i in groups[key])
            if not batches or len(batches[-1]) >= bs or rows + k > 2 * bs or positions + p > 16 * bs:
                if not batches or batches[-1]:
                    batches.append([])
                rows = positions = 0
            batches[-1].append(key)
            rows += k
            positions += p
        pbar = tqdm(total=n, disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood requests")
        for batch in batches:
            for i, answer in self._score_batch(requests, batch, groups):
                results[i] = answer
                request_str = requests[i][0]
                if request_str is not None:
                    self.cache_hook.add_partial("loglikelihood", request_str, answer)
                pbar.update(1)
        pbar.close()
        if too_long:
            for i, answer in zip(too_long, self._sparse_tokens([requests[i] for i in too_long], disable_tqdm=True)):
                results[i] = answer
        return results

    def _score_batch(self, requests, contexts, groups):
        device, pad_id = self.device, self._pad_id()
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for g, ctx in enumerate(contexts):  # left padding: every context ends at the same index
            ids[g, width - len(ctx):] = torch.tensor(ctx, dtype=torch.long)
            mask[g, width - len(ctx):] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                             **self._positions(positions), use_cache=True, logits_to_keep=1)
        first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # scores each continuation's first token
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)

        # continuations longer than one token run after their context's cache
        rows = [(g, i) for g, ctx in enumerate(contexts) for i in groups[ctx] if len(requests[i][2]) > 1]
        later = None
        if rows:
            if cache is None:
                raise RuntimeError("the model returned no KV cache")
            length = max(len(requests[i][2]) - 1 for _, i in rows)
            ids2 = torch.full((len(rows), length), pad_id, dtype=torch.long)
            mask2 = torch.zeros((len(rows), length), dtype=torch.long)
            for r, (_, i) in enumerate(rows):
                cont = requests[i][2][:-1]
                ids2[r, : len(cont)] = torch.tensor(cont, dtype=torch.long)
                mask2[r, : len(cont)] = 1
            select = torch.tensor([g for g, _ in rows], dtype=torch.long)
            cache.reorder_cache(select.to(device))
            full_mask = torch.cat([mask[select], mask2], dim=1)
            ctx_len = mask.sum(1)[select]
            positions2 = ctx_len.unsqueeze(1) + torch.arange(length).unsqueeze(0)
            with torch.no_grad():
                later = self.model(input_ids=ids2.to(device), attention_mask=full_mask.to(device),
                                   **self._positions(positions2), use_cache=True,
                                   **{self._cache_kwarg: cache}).logits  # [rows, length, vocab]
        row_of = {i: r for r, (_, i) in enumerate(rows)}
        for g, ctx in enumerate(contexts):
            for i in groups[ctx]:
                cont = requests[i][2]
                cont_t = torch.tensor(cont, dtype=torch.long, device=first.device)
                log_probs = first[g : g + 1]
                if len(cont) > 1:
                    rest = F.log_softmax(later[row_of[i], : len(cont) - 1].float(), dim=-1)
                    log_probs = torch.cat([log_probs, rest.to(first.device)], dim=0)
                picked = log_probs.gather(1, cont_t.unsqueeze(1)).squeeze(1)
                greedy = bool((log_probs.argmax(dim=-1) == cont_t).all())
                yield i, (float(picked.sum()), greedy)

    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    # ------------------------------------------------------------------ one pass per request
    def _sparse_tokens(self, requests, disable_tqdm: bool = False):

        # Same ordering and one-token-continuation grouping as HFLM._loglikelihood_tokens.
        def _collate(req):
            toks = req[1] + req[2]
            return -len(toks), tuple(toks)

        def _lookup_one_token_cont(req):
            return req[-2] + req[-1][:-1]

        re_ord = Collator(
            requests,
            sort_fn=_collate,
            group_by="contexts" if self.logits_cache else None,
            group_fn=_lookup_one_token_cont,
        )
        batch_size = self.batch_size if isinstance(self.batch_size, int) else 8
        pad_id = self._pad_id()
        res: list[tuple[float, bool]] = []
        pbar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0,
                    desc="Running loglikelihood requests")
        for chunk in re_ord.get_batched(n=batch_size):
            inputs, spans = [], []
            for _, context_enc, continuation_enc in chunk:
                assert len(context_enc) > 0 and len(continuation_enc) > 0
                assert len(continuation_enc) <= self.max_length
                # as HFLM: truncate from the left, drop the last token (nothing to predict after it)
                inp = (context_enc + continuation_enc)[-(self.max_length + 1):][:-1]
                inputs.append(inp)
                # logits at position p score token p + 1: the continuation is scored at these
                spans.append((len(inp) - len(continuation_enc), len(inp)))
            width = max(len(x) for x in inputs)
            batch = torch.full((len(inputs), width), pad_id, dtype=torch.long)
            for i, inp in enumerate(inputs):  # right padding, as HFLM; causal attention ignores it
                batch[i, : len(inp)] = torch.tensor(inp, dtype=torch.long)
            positions = sorted({p for a, b in spans for p in range(a, b)})
            column = {p: i for i, p in enumerate(positions)}
            with torch.no_grad():
                logits = self.model(
                    batch.to(self.device), logits_to_keep=torch.tensor(positions, device=self.device)
                ).logits  # [batch, len(positions), vocab]

            for (request_str, ctx_tokens, cont_toks), row, (a, b) in zip(chunk, logits, spans, strict=True):
                index = torch.tensor([column[p] for p in range(a, b)], device=row.device)
                log_probs = F.log_softmax(row.index_select(0, index).float(), dim=-1).unsqueeze(0)
                greedy = log_probs.argmax(dim=-1)
                for request_str, cont_toks, log_probs in re_ord.get_cache(  # noqa: PLW2901
                    req_str=request_str, cxt_toks=ctx_tokens, cont_toks=cont_toks, logits=log_probs
                ):
                    cont = torch.tensor(cont_toks, dtype=torch.long, device=log_probs.device).unsqueeze(0)
                    max_equal = bool((greedy[:, -cont.shape[1]:] == cont).all())
                    picked = torch.gather(log_probs[:, -cont.shape[1]:], 2, cont.unsqueeze(-1)).squeeze(-1)
                    answer = (float(picked.sum()), max_equal)
                    res.append(answer)
                    if request_str is not None:
                        self.cache_hook.add_partial("loglikelihood", request_str, answer)
                    pbar.update(1)
        pbar.close()
        return re_ord.get_original(res)
