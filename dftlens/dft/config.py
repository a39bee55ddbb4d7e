"""The settings of one DFT run: a dataclass the CLI fills in and notebooks build directly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import DftlensError, LayerError

SIGNALS = ("logits", "feature", "off")
LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class TrainConfig:
    """Everything that decides a run's loss curve (saved as run_config.json)."""

    out: str = "runs/train"
    model: str = "gemma3-270m"
    data: str | None = None  # None: the bundled instructions_train.jsonl
    lang: str = "zh"
    template: str = "plain"  # "plain" or "chat" (the tokenizer's chat template)
    limit: int | None = None  # use at most this many examples
    drop_long: bool = False  # skip examples over max_length instead of stopping
    # layers: a probe's layers.json, or explicit indices (these win)
    layers: str | None = None
    lc_layer: int | None = None
    et_layer: int | None = None
    lc: str = "feature"  # logits | feature | off
    et: str = "logits"
    w_lc: float = 1.0
    w_et: float = 1.0
    detach_english: bool = True
    # what trains
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str = LORA_TARGETS
    save_adapter: bool = False  # checkpoints hold the LoRA adapter instead of merged weights
    freeze_embeddings: bool = False  # with tied embeddings this also freezes the LM head
    # optimisation
    steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    lr: float | None = None  # None: 2e-5 full fine-tuning (the paper), 2e-4 LoRA
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    schedule: str = "cosine"  # cosine | linear | constant (after warm-up)
    max_grad_norm: float = 1.0
    max_length: int = 512
    seed: int = 0
    bf16: bool = True  # autocast on GPU; ignored on CPU
    ce_chunk: int | None = None  # positions per cross-entropy chunk; None: ~64M logits
    # bookkeeping
    save_every: int = 0  # 0: only at the end (and on Ctrl-C)
    keep_checkpoints: int = 2  # intermediate checkpoints kept (the final one always stays)
    backend: str = "transformer_lens"
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("lc", "et"):
            if getattr(self, name) not in SIGNALS:
                raise DftlensError(f"--{name} must be one of {', '.join(SIGNALS)}, not {getattr(self, name)!r}.")
        if self.template not in ("plain", "chat"):
            raise DftlensError(f"--template must be plain or chat, not {self.template!r}.")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise DftlensError(f"--schedule must be cosine, linear or constant, not {self.schedule!r}.")
        for name in ("steps", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise DftlensError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.save_every < 0 or self.keep_checkpoints < 1:
            raise DftlensError("--save-every must be >= 0 and --keep-checkpoints >= 1.")
        for kind in ("lc", "et"):
            if getattr(self, kind) != "off" and getattr(self, f"{kind}_layer") is None and not self.layers:
                raise DftlensError(
                    f"No {kind.upper()} layer: pass --layers <probe dir>/layers.json or --{kind}-layer N "
                    f"(or --{kind} off)."
                )
        if self.save_adapter and not self.lora:
            raise DftlensError("--save-adapter needs --lora.")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 2e-5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Path | str) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def resolve_hooks(cfg: TrainConfig, lm) -> tuple[str | None, str | None]:
    """The LC and ET hook names: explicit layers win, else the probe's layers.json as written."""
    probe = {}
    if cfg.layers:
        path = Path(cfg.layers)
        if path.is_dir():
            path = path / "layers.json"
        try:
            probe = json.loads(path.read_text(encoding="utf-8"))
            probe["hooks"]  # a layers.json always names its hooks
        except FileNotFoundError:
            raise DftlensError(
                f"{path} does not exist; run `dftlens probe` first or pass --lc-layer/--et-layer."
            ) from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DftlensError(f"{path} is not a layers.json written by `dftlens probe` (no 'hooks').") from None
        if probe.get("n_layers") not in (None, lm.n_layers):
            raise LayerError(
                f"{path} was written for a model with {probe['n_layers']} layers, but {lm.name} has "
                f"{lm.n_layers}; probe this model first."
            )
    hooks = []
    for kind, layer in (("lc", cfg.lc_layer), ("et", cfg.et_layer)):
        if getattr(cfg, kind) == "off":
            hooks.append(None)
        elif layer is not None:
            hooks.append(lm.hook_name(layer))
        elif probe.get("hooks", {}).get(kind):
            hooks.append(lm.validate_hook(probe["hooks"][kind]))
        else:
            raise DftlensError(
                f"No {kind.upper()} layer: pass --layers <probe dir>/layers.json or --{kind}-layer N "
                f"(or --{kind} off)."
            )
    return hooks[0], hooks[1]
