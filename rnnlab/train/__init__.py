"""Training runs: config, trainer, checkpoints, learning-curve plots."""
from .config import TrainConfig
from .trainer import TrainResult, build, evaluate, load_history, train, train_step

__all__ = ["TrainConfig", "TrainResult", "build", "evaluate", "load_history", "train",
           "train_step"]
