"""The settings of one DFT run: a dataclass the CLI fills in and notebooks build directly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..config_files import setting
from ..data.languages import split_list
from ..errors import DftlensError
from ..layer_evidence import Evidence
from ..layers import LayerChoice, check_order
from ..models.engines import BACKENDS
from ..models.load_settings import DTYPE_CHOICES, LoadSettings
from .feature_signal import FEATURE_NORMS

SIGNALS = ("logits", "feature", "contrastive", "off")
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class TrainConfig(LoadSettings):
    """Everything that decides a run's loss curve (saved as the run's ``run_config.yaml``).

    How the model loads (``device``, ``dtype``, ``trust_remote_code``) are the fields of
    :class:`~dftlens.models.load_settings.LoadSettings`, as for every verb; ``dtype`` defaults to
    float32 here (master weights), and ``device_map`` must stay None (training places the
    model on one device per process; shard a large one with ``fsdp``).

    ``dftlens train``'s options are generated from these fields (help, defaults and
    choices here); ``dftlens train --config <run>/run_config.yaml`` reruns a run.
    Follows Huo et al. (AAAI 2025): ``L = L_TFT + w_lc * L_LC + w_et * L_ET`` with the
    LC/ET signals at the probe's layers (see :mod:`dftlens.dft.losses`).
    Raises DftlensError/LayerError at construction for values that cannot work.
    """

    out: str = setting("runs/train", "Run directory (log, checkpoints, final/, run_config.yaml).")
    model: str = setting("gemma3-270m", "Alias, Hugging Face id, local directory or .gguf file.")
    data: str | None = setting(None, "Parallel instruction JSONL, a saved HF dataset dir, or hf:NAME[:SPLIT]; "
                                     "default: the bundled set.")
    lang: str = setting("zh", "Target language (a key of the data file).")
    template: str = setting("plain", "Prompt format: plain, or chat (the tokenizer's chat template; "
                                     "--chat-template).", cli=False, choices=("plain", "chat"))
    limit: int | None = setting(None, "Use at most this many examples.")
    drop_long: bool = setting(False, "Skip examples over --max-length instead of stopping.", flag="--drop-long")
    # layers: a probe's layers.json, or explicit indices (these win)
    layers: str | None = setting(None, "layers.json written by `dftlens probe` (its hooks are used as they are).")
    lc_layer: int | None = setting(None, "LC layer i (overrides --layers).")
    et_layer: int | None = setting(None, "ET layer j (overrides --layers).")
    lc_signal: str = setting("feature", "Language-conversion signal.", choices=SIGNALS, flag="--lc", formerly="lc")
    et_signal: str = setting("logits", "English-thinking signal.", choices=SIGNALS, flag="--et", formerly="et")
    w_lc: float = setting(1.0, "Weight of the LC loss.")
    w_et: float = setting(1.0, "Weight of the ET loss.")
    temperature: float = setting(0.1, "Temperature of the contrastive signal (InfoNCE over the step's examples; "
                                      "Liu & Niehues 2025 use 0.1).")
    detach_english: bool = setting(True, "Run the English side of the feature losses without gradients.")
    feature_norm: str = setting("none", "What the feature losses' cosine compares: none (the paper: mean-pooled "
                                        "residuals), center, standardize (running statistics) or rms (each token "
                                        "RMS-normalised before pooling).", choices=FEATURE_NORMS)
    # what trains
    lora: bool = setting(False, "Train LoRA adapters (peft) instead of all weights.", flag="--lora")
    lora_r: int = setting(16, "LoRA rank.")
    lora_alpha: int = setting(32, "LoRA alpha.")
    lora_dropout: float = setting(0.0, "LoRA dropout.")
    lora_targets: str = setting(LORA_TARGETS, "Modules LoRA adapts (comma list).")
    save_adapter: bool = setting(False, "Checkpoints hold the LoRA adapter, not merged weights.", flag="--save-adapter")
    train_neurons: str | None = setting(None, "neurons.csv from `dftlens neurons`: train only those MLP neurons' "
                                              "rows/columns (full fine-tuning; every other weight stays as loaded).")
    neuron_langs: str | None = setting(None, "Languages whose neurons --train-neurons trains (comma list; default: "
                                             "--lang; 'all': every row of the file).")
    freeze_embeddings: bool = setting(False, "Freeze the input embeddings (and a tied LM head).",
                                      flag="--freeze-embeddings")
    # optimisation
    steps: int = setting(100, "Optimizer steps.")
    batch_size: int = setting(4, "Examples per micro-batch (per process).")
    grad_accum: int = setting(1, "Micro-batches per optimizer step.")
    lr: float | None = setting(None, "Peak learning rate (default 2e-5, or 2e-4 with --lora).")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    warmup_ratio: float = setting(0.03, "Fraction of the steps spent warming up.")
    schedule: str = setting("cosine", "Decay after warm-up.", choices=("cosine", "linear", "constant"))
    max_grad_norm: float = setting(1.0, "Gradient clipping (0: off).")
    max_length: int = setting(512, "Longest sequence in tokens; longer examples are an error.")
    seed: int = setting(0, "Random seed (data order, LoRA init).")
    bf16: bool = setting(True, "bf16 mixed precision on GPU (accelerate); final/ in bf16. Ignored on the CPU.")
    gradient_checkpointing: bool = setting(False, "Recompute block activations in the backward pass (less memory).",
                                           flag="--gradient-checkpointing")
    fsdp: bool = setting(False, "Shard the decoder layers over the processes (FSDP2; full fine-tuning); on by "
                                "itself under an FSDP launch.", flag="--fsdp")
    ce_chunk: int | None = setting(None, "Positions per cross-entropy chunk (default: about 64M logits).")
    # bookkeeping
    save_every: int = setting(0, "Save a checkpoint every N steps (0: only at the end, and on Ctrl-C).")
    keep_checkpoints: int = setting(2, "Intermediate checkpoints kept (the final one always stays).")
    report_to: str = setting("", "Experiment trackers besides log.jsonl: tensorboard, wandb (comma list).")
    backend: str = setting("transformer_lens", "The engine that reads the activations the losses use.",
                           choices=BACKENDS)
    # device, device_map and trust_remote_code come from LoadSettings; training keeps float32 master weights
    dtype: str = setting("float32", "Weights dtype for training: float32 (master weights; bf16 autocast on a GPU), "
                                    "auto, bfloat16 or float16.", choices=DTYPE_CHOICES)

    def __post_init__(self) -> None:
        """Check every value that needs no file and no model (the Python API gets the same errors).

        Finite numbers and the fields' ``choices`` are checked generically (:func:`check_fields`).
        """
        super().__post_init__()  # check_fields (finite numbers, choices) and the device
        if self.device_map is not None:
            raise DftlensError("Training puts the model on one device per process and does not take a device map; "
                               "shard a model too large for one GPU with --fsdp.")
        for name in ("steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise DftlensError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}.")
        if self.limit is not None and self.limit < 1:
            raise DftlensError(f"--limit must be at least 1, not {self.limit}.")
        if self.ce_chunk is not None and self.ce_chunk < 1:
            raise DftlensError(f"ce_chunk must be at least 1, not {self.ce_chunk}.")
        if self.save_every < 0 or self.keep_checkpoints < 1:
            raise DftlensError("--save-every must be >= 0 and --keep-checkpoints >= 1.")
        if self.lr is not None and not self.lr > 0:
            raise DftlensError(f"--lr must be a positive learning rate such as 2e-5, not {self.lr}.")
        for name, low in (("w_lc", 0.0), ("w_et", 0.0), ("weight_decay", 0.0), ("max_grad_norm", 0.0)):
            if not getattr(self, name) >= low:
                raise DftlensError(f"--{name.replace('_', '-')} must be >= {low:g}, not {getattr(self, name)}.")
        if not self.temperature > 0:
            raise DftlensError(f"--temperature must be positive (e.g. 0.1), not {self.temperature}.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise DftlensError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}.")
        if self.lora:
            if self.lora_r < 1:
                raise DftlensError(f"--lora-r must be at least 1 (the adapter rank), not {self.lora_r}.")
            if self.lora_alpha <= 0:
                raise DftlensError(f"--lora-alpha must be positive, not {self.lora_alpha}.")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise DftlensError(f"--lora-dropout must be in [0, 1), not {self.lora_dropout}.")
            if not split_list(self.lora_targets):
                raise DftlensError("--lora-targets names no module; e.g. q_proj,v_proj.")
        for kind in ("lc", "et"):
            if getattr(self, f"{kind}_signal") != "off" and getattr(self, f"{kind}_layer") is None and not self.layers:
                raise DftlensError(
                    f"No {kind.upper()} layer: pass --layers <probe dir>/layers.json or --{kind}-layer N "
                    f"(or --{kind} off)."
                )
        check_order(*self._given_layers())
        from ..models.load_settings import resolve_dtype

        resolve_dtype(self.dtype, "cpu")  # a bad --dtype fails before anything loads
        if self.save_adapter and not self.lora:
            raise DftlensError("--save-adapter needs --lora.")
        if self.train_neurons:
            for clash, why in ((self.lora, "--lora (LoRA's update B @ A spans every row and column)"),
                               (self.fsdp, "--fsdp (sharded parameters drop the gradient masks)"),
                               (self.weight_decay > 0, "--weight-decay > 0 (AdamW would shrink the frozen "
                                                       "weights too)")):
                if clash:
                    raise DftlensError(f"--train-neurons masks full fine-tuning's MLP gradients and cannot be "
                                       f"combined with {why}.")
        if self.fsdp and self.lora:
            raise DftlensError("--fsdp shards full fine-tuning; LoRA trains few weights, run it data parallel "
                               "(drop --fsdp).")

    def neuron_languages(self) -> list[str] | None:
        """The languages ``--train-neurons`` selects: ``neuron_langs`` (None for 'all'), else ``[lang]``."""
        if not self.neuron_langs:
            return [self.lang]
        return None if self.neuron_langs.strip() == "all" else split_list(self.neuron_langs)

    def _given_layers(self) -> tuple[int | None, int | None]:
        """The explicit layers of the signals that are on (None: not given, or the signal is off)."""
        return (self.lc_layer if self.lc_signal != "off" else None,
                self.et_layer if self.et_signal != "off" else None)

    def signals(self) -> dict[str, str]:
        """``{"lc": lc_signal, "et": et_signal}``."""
        return {"lc": self.lc_signal, "et": self.et_signal}

    def layer_choice(self, n_layers: int | None = None) -> LayerChoice | None:
        """The one :class:`~dftlens.layers.LayerChoice` this run trains at.

        The probe's ``layers.json`` (validated; ``n_layers`` known: it must be this model's)
        with ``--lc-layer``/``--et-layer`` applied by :meth:`LayerChoice.with_layers` (recorded
        in its evidence), or, without a file, the explicit layers. A signal that is off has no
        layer. None when ``n_layers`` is unknown and there is no file (nothing more to check).
        Raises DataError/LayerError with one sentence.
        """
        lc, et = self._given_layers()
        on = [k for k, v in self.signals().items() if v != "off"]
        needs_file = any(getattr(self, f"{k}_layer") is None for k in on)
        if self.layers and needs_file:
            choice = LayerChoice.load(self.layers)
            if n_layers is not None:
                choice.check_model(n_layers, self.model)
            for kind in ("lc", "et"):
                if kind not in on:
                    choice = choice.without(kind)
            return choice.with_layers(lc=lc, et=et)
        if n_layers is None:
            return None
        evidence = Evidence(lc_decided_by="user override" if lc is not None else "",
                            et_decided_by="user override" if et is not None else "",
                            overrides={k: v for k, v in (("lc", lc), ("et", et)) if v is not None})
        return LayerChoice(self.model, n_layers, lc, et, evidence=evidence)

    def validate(self, n_layers: int | None = None) -> LayerChoice | None:
        """Everything checkable before the model loads: the values, the layers file, the layer order.

        ``n_layers`` (the model's blocks, from its config.json) adds the range checks.
        Returns :meth:`layer_choice`.
        """
        self.__post_init__()
        check_order(*self._given_layers(), n_layers)
        if self.train_neurons:
            from .neuron_mask import read_neuron_file

            read_neuron_file(self.train_neurons, self.neuron_languages())  # a bad file fails before the model loads
        return self.layer_choice(n_layers)

    def with_absolute_paths(self) -> "TrainConfig":
        """A copy whose data, layers and local model paths are absolute, so ``--resume`` works from any directory."""
        from dataclasses import replace

        def absolute(value: str | None) -> str | None:
            if not value or value.startswith("hf:") or not Path(value).expanduser().exists():
                return value
            return str(Path(value).expanduser().resolve())

        return replace(self, data=absolute(self.data), layers=absolute(self.layers), model=absolute(self.model),
                       train_neurons=absolute(self.train_neurons))

    def input_files(self) -> dict[str, Path]:
        """The files whose content decides the run (``--data``, ``--layers``), by option name."""
        from ..data.instruction_files import BUNDLED_TRAIN

        files = {"--data": Path(self.data).expanduser() if self.data else BUNDLED_TRAIN}
        if self.train_neurons:
            files["--train-neurons"] = Path(self.train_neurons).expanduser()
        if self.layers:
            path = Path(self.layers).expanduser()
            files["--layers"] = path / "layers.json" if path.is_dir() else path
        return {k: v for k, v in files.items() if v.is_file() or not v.exists()}

    def input_checksums(self) -> dict[str, dict[str, str]]:
        """``{option: {"path", "sha256"}}`` of :meth:`input_files`, recorded in the run to check on resume."""
        return {name: {"path": str(path), "sha256": sha256_file(path)} for name, path in self.input_files().items()
                if path.is_file()}

    def check_inputs(self, recorded: dict) -> None:
        """Refuse to resume when a file the run was started with moved or changed (one sentence naming it)."""
        for name, entry in (recorded or {}).items():
            path = Path(entry["path"])
            if not path.is_file():
                raise DftlensError(f"{path} (the run's {name}) no longer exists; put it back there to resume, "
                                   "or start a new run.")
            if sha256_file(path) != entry["sha256"]:
                raise DftlensError(f"{path} (the run's {name}) changed since the run started; resuming would "
                                   "continue on different inputs, so restore it or start a new run.")

    @property
    def learning_rate(self) -> float:
        """``lr`` when set, else the default: 2e-4 with LoRA, 2e-5 for full fine-tuning."""
        return self.lr if self.lr is not None else (2e-4 if self.lora else 2e-5)

    def to_dict(self) -> dict:
        """Every field as a plain dict (``run_config.yaml``; a checkpoint's ``run_config.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A config from a saved dict; keys that are not fields (e.g. ``completed_steps``) are ignored,
        and the old names of renamed fields (``lc``, ``et``) are read into the new ones."""
        from ..config_files import renamed_settings

        data = renamed_settings(cls, data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Path | str) -> "TrainConfig":
        """The config saved in a ``run_config.json`` file; DataError if the file is damaged."""
        from ..io import read_json

        data = read_json(path, dict)
        try:
            return cls.from_dict(data)
        except TypeError as exc:  # a value of the wrong type in a hand-edited file
            raise DftlensError(f"{path} is damaged: {exc}.") from None


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
