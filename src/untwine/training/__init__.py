"""Training: config, the one training step, the loop, checkpoints, and the representations of a trained run."""

from untwine.training.config import TrainConfig
from untwine.training.interrupt import TrainingInterrupted
from untwine.training.loop import load_run_config, train
from untwine.training.representation import (
    TorchScriptRepresentation,
    export_torchscript,
    load_trained_model,
    representation_function,
)
from untwine.training.run_files import RunDirectoryError, RunExistsError
from untwine.training.step import TrainingDivergedError, training_step

__all__ = [
    "RunDirectoryError",
    "RunExistsError",
    "TorchScriptRepresentation",
    "TrainConfig",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "export_torchscript",
    "load_run_config",
    "load_trained_model",
    "representation_function",
    "train",
    "training_step",
]
