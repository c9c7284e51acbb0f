"""Training: config, the loop, checkpoints, and the representations of a trained run."""

from untwine.training.config import TrainConfig
from untwine.training.loop import TrainingDivergedError, load_run_config, train
from untwine.training.representation import (
    TorchScriptRepresentation,
    export_torchscript,
    load_trained_model,
    representation_function,
)

__all__ = [
    "TorchScriptRepresentation",
    "TrainConfig",
    "TrainingDivergedError",
    "export_torchscript",
    "load_run_config",
    "load_trained_model",
    "representation_function",
    "train",
]
