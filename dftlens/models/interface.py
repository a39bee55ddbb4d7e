"""The one model interface that analysis and training share.

A :class:`LensModel` wraps a Hugging Face causal LM loaded once, and reads or
attaches to its activations by TransformerLens hook names through one of two
engines (TransformerLens ``TransformerBridge`` or nnsight). Everything above this
module speaks hook names only and never needs to know which engine runs.

Its parts: the capture contract (``Capture``, ``Engine``, ``Positions``) is
:mod:`.engine_protocol`, the logit lens (:meth:`LensModel.decode` and its helpers)
:mod:`.decoding`, tokenizing :mod:`.tokenizing`, prefix reuse :mod:`.kv_prefix`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import torch

from ..errors import LayerError
from ..numerics import check_activations
from .architecture import Architecture, describe
from .engine_protocol import Capture, Engine, Positions, gather_positions, last_token_index, position_ids_from_mask
from .decoding import LogitLens
from .hook_points import execution_order, hook_name, parse_hook_name
from .kv_prefix import KVPrefix
from .tokenizing import Tokenizing

if TYPE_CHECKING:
    from .interventions import Edit


@dataclass
class LensModel(LogitLens, Tokenizing):
    """A loaded model behind one interface for analysis and training, with TransformerLens hook names.

    Activations are named ``blocks.{layer}.hook_{site}`` (``layer``: 0-based block index;
    ``site`` one of :data:`~dftlens.models.hook_points.SITES`) whichever engine runs the model
    (TransformerLens 4 ``TransformerBridge`` or nnsight 0.8). Shapes: ``b`` batch rows, ``t``
    tokens, ``d`` = :attr:`d_model`, ``V`` = :attr:`vocab_size`, ``L`` = :attr:`n_layers`.

    - :meth:`tokenize`: texts -> ``{"input_ids", "attention_mask"}``, both ``[b, t]`` on :attr:`device`.
    - :meth:`capture`: activations at hook names (one shape contract, see there).
    - :meth:`intervene`: the same pass with edits written in (:mod:`.interventions`).
    - :meth:`decode` (aliases ``unembed``, ``logit_lens``): the logit lens (nostalgebraist 2020,
      as used by Wendler et al. 2024): final norm, LM head, soft-cap, float32 ``[..., V]`` from
      ``[..., d]``; :meth:`log_probs` its log-softmax.

    Fields: ``hf_model`` (the Hugging Face model), ``tokenizer``, ``engine`` (None: loaded for
    evaluation only; :meth:`capture` then raises LayerError), ``name`` (alias or path),
    ``path`` (local directory), ``lens_chunk`` (rows decoded at once), ``arch`` (derived family
    table, :class:`~dftlens.models.architecture.Architecture`). Built by :func:`dftlens.load_model`.
    """

    hf_model: torch.nn.Module
    tokenizer: object
    engine: Engine | None  # None: no activations (e.g. evaluation only)
    name: str = "model"
    path: str | None = None  # local HF directory it was loaded from
    lens_chunk: int | None = None  # lens rows decoded at once (None: from a memory budget)
    arch: Architecture = field(init=False)

    def __post_init__(self) -> None:
        self.arch = describe(self.hf_model)

    # ---- what the model is -------------------------------------------------
    @property
    def backend(self) -> str | None:
        """The engine's name (``"transformer_lens"`` or ``"nnsight"``); None when loaded without one."""
        return self.engine.name if self.engine is not None else None

    @property
    def config(self):
        """The Hugging Face model config."""
        return self.hf_model.config

    @property
    def n_layers(self) -> int:
        """Number of decoder blocks (``config.num_hidden_layers``)."""
        return int(self.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        """Width of the residual stream (``config.hidden_size``)."""
        return int(self.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        """Rows of the LM head: the length ``V`` of :meth:`decode`'s last axis.

        May exceed the tokenizer's vocabulary (padded embedding matrices).
        """
        return int(self.hf_model.get_output_embeddings().weight.shape[0])

    @property
    def device(self) -> torch.device:
        """Where inputs go (the input embedding's device, also under a device map; the CPU for NDIF's meta model)."""
        device = self.hf_model.get_input_embeddings().weight.device
        return torch.device("cpu") if device.type == "meta" else device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype (that of the input embedding); activations come in it."""
        return self.hf_model.get_input_embeddings().weight.dtype

    def check_layer(self, layer: int, what: str = "layer") -> int:
        """``layer`` as an int when it is a block index of this model (``0 .. n_layers - 1``).

        Raises:
            LayerError: out of range; the message starts with ``what`` and names the valid range.
        """
        if not 0 <= int(layer) < self.n_layers:
            raise LayerError(
                f"{what} {layer} is out of range: {self.name} has blocks 0..{self.n_layers - 1}."
            )
        return int(layer)

    def hook_name(self, layer: int, site: str = "resid_post") -> str:
        """The hook name ``blocks.{layer}.hook_{site}``; LayerError for a bad layer or site."""
        return hook_name(self.check_layer(layer), site)

    def hook_names(self, site: str = "resid_post", layers: Iterable[int] | None = None) -> list[str]:
        """The hook names of ``site`` at ``layers`` (default: every block, in order).

        Raises:
            LayerError: as :meth:`hook_name`.
        """
        layers = range(self.n_layers) if layers is None else layers
        return [self.hook_name(layer, site) for layer in layers]

    def validate_hook(self, name: str) -> str:
        """``name`` if this model has that hook; LayerError naming the layers or sites it has otherwise."""
        layer, site = parse_hook_name(name)
        self.check_layer(layer, what=f"Hook {name!r} names layer")
        self.arch.check_site(site, self.name)
        return name

    @property
    def sites(self) -> tuple[str, ...]:
        """The hook sites this model has (GPT-NeoX with parallel attention has no resid_mid)."""
        return self.arch.available

    # ---- running -----------------------------------------------------------
    def capture(
        self,
        batch: dict[str, torch.Tensor],
        names: Iterable[str],
        positions: Positions = None,
        grad: bool = False,
        edits: "list[Edit] | None" = None,
    ) -> Capture:
        """Read the activations at ``names`` (hook names) for one batch.

        Only what is asked for is kept: the forward pass stops after the last
        requested hook, and with ``positions`` only those positions are stored.
        With ``grad=True`` the tensors stay in the autograd graph (for losses).
        ``edits`` (see :meth:`intervene`) are applied during the same pass.

        Args:
            batch: ``input_ids`` and ``attention_mask`` ``[b, t]`` (either padding side;
                positions come from the mask), optionally a KV cache, in which case
                ``t`` counts the new tokens only.
            names: hook names; any order, duplicates ignored.
            positions: which positions to keep (the one shape contract):

                ===================  ============  ==============================================
                ``positions``        ``cap[name]`` kept
                ===================  ============  ==============================================
                ``None``             ``[b, t, d]`` every position (padding included)
                ``"last"``           ``[b, d]``    each row's last real token (the axis dropped)
                LongTensor ``[b]``   ``[b, 1, d]`` one position per row
                LongTensor ``[b, k]`` ``[b, k, d]`` ``k`` positions per row
                ===================  ============  ==============================================

                A tensor always keeps the position axis (length ``k``); ``"last"`` drops it.
                Activations are in the model's dtype, on the device of the block that
                produced them.

        Returns:
            :class:`Capture`: ``cap[name]`` as above, ``cap.attention_mask`` ``[b, t]``,
            ``cap.positions`` the ``[b, k]`` index kept (None for every position).

        Raises:
            LayerError: a name that is not a hook of this model, or a model loaded without
                an engine. ValueError: ``positions`` is a string other than ``"last"``.
            NonFiniteError: (``grad=False``) an activation holds NaN or inf at a real token;
                the message names the first such layer and the dtype (:mod:`dftlens.numerics`).
        """
        names = sorted({self.validate_hook(n) for n in names}, key=execution_order)
        derived = self._derived_parts(names)  # BLOOM's attn_out/mlp_out: differences of residual states
        run_names = sorted(set(names) - set(derived) | {p for parts in derived.values() for p in parts},
                           key=execution_order)
        if self.engine is None:
            raise LayerError(f"{self.name} was loaded without an engine (backend=None); reload it with a backend.")
        # With a KV cache (``batch["past_key_values"]``) the mask covers cache + new
        # tokens; positions and edits refer to the new tokens only.
        mask = batch["attention_mask"][:, -batch["input_ids"].shape[1]:]
        index = self._position_index(positions, mask)
        plan = self._edit_plan(edits, mask)
        kept: dict[str, torch.Tensor] = {}

        def keep(name: str, act: torch.Tensor) -> None:
            kept[name] = act if index is None else gather_positions(act, index, drop=isinstance(positions, str))

        with torch.set_grad_enabled(grad):
            self.engine.run(self._run_batch(batch), run_names, keep, **({"edit": plan} if plan else {}))
        for name, (a, b) in derived.items():
            kept[name] = kept[a] - kept[b]
        kept = {n: kept[n] for n in names}
        if not grad:  # training checks its losses instead (dft.trainer), without a sync per pass
            check_activations(kept, self.name, self.dtype, mask if index is None else None)
        return Capture(kept, mask, index)

    def run_prefix(
        self,
        batch: dict[str, torch.Tensor],
        names: Iterable[str] = (),
        positions: Positions = None,
        grad: bool = False,
    ) -> tuple[Capture, KVPrefix]:
        """Run ``batch`` once through every block, keeping each block's keys and values for later passes.

        The one way to reuse a prefix (:mod:`.kv_prefix`): a later :meth:`capture` or
        :meth:`intervene` on ``prefix.extend(new)`` runs only the new tokens and gives the
        numbers of one pass over prefix and new tokens together. ``batch``, ``names``,
        ``positions`` and ``grad`` are those of :meth:`capture`; the pass always runs to the
        last block (its ``resid_post`` is read to get there, and returned only when in ``names``).
        With ``grad=True`` the keys/values stay in the autograd graph.

        Returns:
            ``(capture, prefix)``: the :class:`Capture` of ``names`` and a :class:`~.kv_prefix.KVPrefix`
            with ``P = t`` cached positions (``b`` rows).

        Raises:
            As :meth:`capture`.
        """
        prefix = KVPrefix.empty()
        names = {self.validate_hook(n) for n in names}
        last = self.hook_name(self.n_layers - 1)
        cap = self.capture(prefix.extend(batch), names | {last}, positions=positions, grad=grad)
        if last not in names:
            del cap.activations[last]
        return cap, prefix

    def intervene(
        self,
        batch: dict[str, torch.Tensor],
        edits: "list[Edit]",
        names: Iterable[str] | None = None,
        positions: Positions = "last",
        grad: bool = False,
        lens: bool = False,
    ) -> Capture:
        """Run ``batch`` with ``edits`` written into it and capture ``names`` in the same pass.

        ``edits``: :class:`~dftlens.models.interventions.Edit` objects (hook, rows,
        positions, tensor or function, replace/add); see that module for shapes.
        ``names`` default to the last block's ``resid_post``, whose lens is the
        model's own next-token logits. Captures see the edited activations. With
        ``lens=True`` the result's ``logits[name]`` holds ``unembed`` of each
        capture (``[batch, vocab]`` for ``positions="last"``). Both engines give the
        same numbers; with ``grad=True`` gradients reach the model and any tensor
        used in an edit. Raises LayerError for a hook outside the model.
        """
        names = list(names) if names is not None else [self.hook_name(self.n_layers - 1)]
        cap = self.capture(batch, names, positions=positions, grad=grad, edits=list(edits))
        if lens:
            with torch.set_grad_enabled(grad):
                cap.logits = {n: self.decode(a) for n, a in cap.activations.items()}
        return cap

    @property
    def lens_in_trace(self) -> bool:
        """Whether the probe's lens runs inside one engine trace (nnsight on NDIF, or set so by
        hand on the engine) instead of capturing residuals (:mod:`dftlens.analysis.lens_in_trace`)."""
        return bool(getattr(self.engine, "lens_in_trace", False))

    def trace_target(self) -> tuple[object, bool]:
        """``(nnsight model, remote)``: what code run inside one nnsight trace needs (its
        ``.trace(inputs, remote=remote)`` and module envoys). Raises DftlensError unless the
        engine is nnsight."""
        from ..errors import DftlensError

        if self.backend != "nnsight":
            raise DftlensError("The in-trace lens needs the nnsight engine: load_model(..., backend='nnsight').")
        return self.engine.model, bool(self.engine.remote)

    def forward_logits(self, batch: dict[str, torch.Tensor], logits_to_keep: int = 0) -> torch.Tensor:
        """A bare Hugging Face forward pass (no hooks), the reference for timings and tests."""
        return self.hf_model(**self.model_inputs(batch), logits_to_keep=logits_to_keep).logits

    def _run_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` for the engine: position ids of the new tokens counted over the whole mask (none for BLOOM)."""
        run_batch = {k: v for k, v in batch.items() if k != "position_ids"}
        if self.arch.position_ids:  # BLOOM takes none (ALiBi from the mask)
            new = batch["input_ids"].shape[1]
            run_batch["position_ids"] = position_ids_from_mask(batch["attention_mask"])[:, -new:]
        return run_batch

    def _edit_plan(self, edits: "list[Edit] | None", mask: torch.Tensor):
        """The engines' ``EditPlan`` for ``edits`` (None without edits); LayerError for a derived site."""
        if not edits:
            return None
        from .interventions import EditPlan

        for e in edits:
            if parse_hook_name(self.validate_hook(e.hook))[1] in self.arch.derived:
                raise LayerError(f"{e.hook} of {self.name} ({self.arch.family}) is a difference of residual "
                                 "states, not a module output; edit a resid_* hook instead.")
        return EditPlan(list(edits), mask)

    def _derived_parts(self, names: list[str]) -> dict[str, tuple[str, str]]:
        out = {}
        for name in names:
            layer, site = parse_hook_name(name)
            if site in self.arch.derived:
                a, b = self.arch.derived[site]
                out[name] = (hook_name(layer, a), hook_name(layer, b))
        return out

    def _position_index(self, positions: Positions, mask: torch.Tensor) -> torch.Tensor | None:
        if positions is None:
            return None
        if isinstance(positions, str):
            if positions != "last":
                raise ValueError(f"positions must be None, 'last' or a tensor, not {positions!r}")
            return last_token_index(mask).unsqueeze(1)
        positions = positions.to(mask.device).long()
        return positions.unsqueeze(1) if positions.dim() == 1 else positions

    def with_backend(self, backend: str, **engine_options) -> "LensModel":
        """The same loaded weights behind another engine (nothing is reloaded)."""
        from .engines import make_engine

        engine = make_engine(backend, self.hf_model, self.tokenizer, self.name, self.path, **engine_options)
        return LensModel(self.hf_model, self.tokenizer, engine, self.name, self.path, self.lens_chunk)


__all__ = ["LensModel"]
