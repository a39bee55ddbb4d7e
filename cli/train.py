"""`dftlens train`: a thin layer over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import app, console, err_console, user_errors
from .options import DEVICE, TRAIN_DTYPE

# Options that define a run; with --resume they come from the run's saved config.
_RUN_OPTIONS = (
    "model", "layers", "lc_layer", "et_layer", "lc", "et", "w_lc", "w_et", "detach_english", "feature_norm", "lang", "data",
    "chat_template", "limit", "drop_long", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets",
    "save_adapter", "freeze_embeddings", "steps", "batch_size", "grad_accum", "lr", "weight_decay",
    "warmup_ratio", "schedule", "max_grad_norm", "max_length", "seed", "save_every", "keep_checkpoints",
    "gradient_checkpointing", "fsdp", "bf16", "report_to",
    "backend", "device", "dtype", "out",
)


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    model: str = typer.Option("gemma3-270m", help="Alias, Hugging Face id, local directory or .gguf file."),
    layers: Optional[Path] = typer.Option(None, help="layers.json written by `dftlens probe` (its hooks are used as they are)."),
    lc_layer: Optional[int] = typer.Option(None, help="LC layer i (overrides --layers)."),
    et_layer: Optional[int] = typer.Option(None, help="ET layer j (overrides --layers)."),
    lc: str = typer.Option("feature", help="Language-conversion signal: logits, feature or off."),
    et: str = typer.Option("logits", help="English-thinking signal: logits, feature or off."),
    w_lc: float = typer.Option(1.0, help="Weight of the LC loss."),
    w_et: float = typer.Option(1.0, help="Weight of the ET loss."),
    detach_english: bool = typer.Option(True, "--detach-english/--no-detach-english",
                                        help="Run the English side of the feature losses without gradients."),
    feature_norm: str = typer.Option("none", help="What the feature losses' cosine compares: none (the paper: "
                                     "mean-pooled residuals), center, standardize (running statistics) or rms "
                                     "(each token RMS-normalised before pooling)."),
    lang: str = typer.Option("zh", help="Target language (a key of the data file)."),
    data: Optional[str] = typer.Option(None, help="Parallel instruction JSONL, a saved HF dataset dir, or hf:NAME[:SPLIT]; default: the bundled set."),
    chat_template: bool = typer.Option(False, "--chat-template", help="Format prompts with the tokenizer's chat template."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many examples."),
    drop_long: bool = typer.Option(False, "--drop-long", help="Skip examples over --max-length instead of stopping."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (peft) instead of all weights."),
    lora_r: int = typer.Option(16, help="LoRA rank."),
    lora_alpha: int = typer.Option(32, help="LoRA alpha."),
    lora_dropout: float = typer.Option(0.0, help="LoRA dropout."),
    lora_targets: str = typer.Option("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", help="Modules LoRA adapts."),
    save_adapter: bool = typer.Option(False, "--save-adapter", help="Checkpoints hold the LoRA adapter, not merged weights."),
    freeze_embeddings: bool = typer.Option(False, "--freeze-embeddings", help="Freeze the input embeddings (and a tied LM head)."),
    steps: int = typer.Option(100, help="Optimizer steps."),
    batch_size: int = typer.Option(4, help="Examples per micro-batch (per process)."),
    grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 2e-5, or 2e-4 with --lora)."),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
    warmup_ratio: float = typer.Option(0.03, help="Fraction of the steps spent warming up."),
    schedule: str = typer.Option("cosine", help="Decay after warm-up: cosine, linear or constant."),
    max_grad_norm: float = typer.Option(1.0, help="Gradient clipping (0: off)."),
    max_length: int = typer.Option(512, help="Longest sequence in tokens; longer examples are an error."),
    seed: int = typer.Option(0, help="Random seed (data order, LoRA init)."),
    save_every: int = typer.Option(0, help="Save a checkpoint every N steps (0: only at the end)."),
    keep_checkpoints: int = typer.Option(2, help="Intermediate checkpoints kept."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing",
                                                help="Recompute block activations in the backward pass (less memory)."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Shard the decoder layers over the processes (FSDP2; full fine-tuning)."),
    bf16: bool = typer.Option(True, "--bf16/--no-bf16", help="bf16 mixed precision on GPU (accelerate); final/ in bf16."),
    report_to: str = typer.Option("", help="Experiment trackers besides log.jsonl: tensorboard, wandb (comma list)."),
    backend: str = typer.Option("transformer_lens", help="transformer_lens or nnsight."),
    device: Optional[str] = DEVICE,
    dtype: str = TRAIN_DTYPE,
    out: Path = typer.Option(Path("runs/train"), help="Run directory (log, checkpoints)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier run in --out (with --resume: "
                                   "continue a finished run from an earlier checkpoint, rewriting final/)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory (or from this checkpoint)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    dump_examples: Optional[int] = typer.Option(
        None, help="Write the token sequences of the first N examples to OUT/examples.jsonl and exit (no training)."),
) -> None:
    """Deep Supervision Fine-Tuning: target-language fine-tuning plus LC/ET supervision at the probed layers."""
    from dftlens.dft.config import TrainConfig
    from dftlens.dft.trainer import TrainingInterrupted, curve_table, resume_config
    from dftlens.dft.trainer import train as run_training
    from dftlens.errors import DftlensError

    if dump_examples is not None:
        from dftlens.dft.examples import dump_examples as dump

        if dump_examples < 1:
            raise DftlensError("--dump-examples must be at least 1.")
        # Only the data settings matter here: every sequence is written, whatever the signals.
        cfg = TrainConfig(out=str(out), model=model, data=data, lang=lang, template="chat" if chat_template else "plain",
                          limit=limit, drop_long=drop_long, max_length=max_length, lc="off", et="off")
        path = dump(cfg, dump_examples, overwrite=overwrite)
        console.print(f"wrote {path}", highlight=False)
        return
    if resume is not None:
        given = [n for n in _RUN_OPTIONS if ctx.get_parameter_source(n).name not in ("DEFAULT", "DEFAULT_MAP")]
        if given:
            raise DftlensError(
                "--resume continues a run with its saved settings; drop "
                + ", ".join("--" + n.replace("_", "-") for n in given) + "."
            )
        cfg = resume_config(resume)
    else:
        cfg = TrainConfig(
            out=str(out), model=model, data=data, lang=lang, template="chat" if chat_template else "plain",
            limit=limit, drop_long=drop_long, layers=str(layers) if layers else None, lc_layer=lc_layer,
            et_layer=et_layer, lc=lc, et=et, w_lc=w_lc, w_et=w_et, detach_english=detach_english,
            feature_norm=feature_norm, lora=lora,
            lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_targets=lora_targets,
            save_adapter=save_adapter, freeze_embeddings=freeze_embeddings, steps=steps, batch_size=batch_size,
            grad_accum=grad_accum, lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
            schedule=schedule, max_grad_norm=max_grad_norm, max_length=max_length, seed=seed,
            save_every=save_every, keep_checkpoints=keep_checkpoints, backend=backend, device=device, dtype=dtype,
            gradient_checkpointing=gradient_checkpointing, fsdp=fsdp, bf16=bf16, report_to=report_to,
        )
    try:
        result = run_training(cfg, resume=resume, overwrite=overwrite, progress=progress)
    except TrainingInterrupted as stop:
        err_console.print(
            f"interrupted after step {stop.step}; checkpoint saved in {stop.checkpoint}. "
            f"Continue with: dftlens train --resume {cfg.out}", highlight=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        err_console.print(f"stopped; checkpoints already in {cfg.out} (if any) are intact.", highlight=False)
        raise typer.Exit(130) from None
    if not result.main:
        return
    console.print(curve_table(result.log).to_string(index=False), highlight=False)
    console.print(f"model saved in {result.final} (log: {result.out / 'log.jsonl'})", highlight=False)
