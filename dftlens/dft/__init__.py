"""Deep Supervision Fine-Tuning (DFT): the losses, the trainer and its settings.

    from dftlens.dft import TrainConfig, train
    result = train(TrainConfig(out="runs/dft-zh", lang="zh", layers="runs/probe/layers.json",
                               lc_signal="feature", et_signal="logits", steps=20))
    result.to_dataframe()  # the loss curve, one row per step

``losses.DFTLoss`` computes the components on one batch for custom loops.
"""

from .config import TrainConfig
from .losses import DFTLoss
from .trainer import TrainingInterrupted, TrainResult, train

__all__ = ["DFTLoss", "TrainConfig", "TrainResult", "TrainingInterrupted", "train"]
