"""The training loop, readable top to bottom.

``train(config, run_dir)`` creates a run directory::

    RUN_DIR/config.json       resolved config, library versions, git commit, device
    RUN_DIR/checkpoint.pt     latest checkpoint (atomic), every ``checkpoint_every`` steps and at the end
    RUN_DIR/log.jsonl         one JSON line every ``log_every`` steps: loss terms, KL per latent, images/s
    RUN_DIR/final_eval.json   loss terms averaged over held-out batches after the last step
    RUN_DIR/validation.json   few-label models with model.train_percentage < 1: scores on the labelled
                              validation split (untwine.training.validation)
    RUN_DIR/tensorboard/      TensorBoard events, when the ``tensorboard`` package is installed

``train(config=None, run_dir, resume=True)`` continues from the last checkpoint and ends with parameters
bit-identical to an uninterrupted run (same device and thread count), because every source of
randomness -- model initialisation, data stream, reparameterisation noise -- comes from generators
seeded from ``config.seed`` and saved in the checkpoint.  That holds after a kill (SIGKILL, power loss:
the checkpoint is replaced atomically) and after Ctrl-C (the step under way is finished and
checkpointed).  The files, the run's lock and the errors about them are in
:mod:`untwine.training.run_files`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from untwine.data import BatchStream, PairStream, get_dataset
from untwine.models import VAEModel, build_model
from untwine.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from untwine.training.config import TrainConfig
from untwine.training.interrupt import TrainingInterrupted, deferred_sigint
from untwine.training.run_files import (
    CONFIG_NAME,
    FINAL_EVAL_NAME,
    LOCK_NAME,
    LOG_NAME,
    RunDirectoryError,
    RunExistsError,
    describe_write_error,
    read_config_file,
    read_log_lines,
    remove_stale_temporaries,
)
from untwine.training.step import TrainingDivergedError, training_step
from untwine.utils.io import atomic_write_json, atomic_write_text
from untwine.utils.locks import directory_lock
from untwine.utils.versions import git_commit, library_versions

__all__ = ["CONFIG_NAME", "FINAL_EVAL_NAME", "LOG_NAME", "RunSeeds", "load_run_config", "train"]


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds for each random stream of a run, all derived from ``config.seed``."""

    init: int
    data: int
    noise: int
    eval: int

    @classmethod
    def from_seed(cls, seed: int) -> RunSeeds:
        words = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)
        return cls(*(int(w % (2**62)) for w in words))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=cpu")
    return device


def build_run_model(config: TrainConfig, num_channels: int, device: torch.device) -> torch.nn.Module:
    """Build the configured model with weights drawn from the run's own init seed (no global RNG)."""
    init_generator = torch.Generator().manual_seed(RunSeeds.from_seed(config.seed).init)
    model = build_model(
        config.model,
        num_channels=num_channels,
        num_latents=config.num_latents,
        architecture=config.architecture,
        encoder_kernels=config.encoder_kernels,
        reconstruction=config.reconstruction,
        init_generator=init_generator,
        **config.model_params,
    )
    model = model.to(device)
    if config.channels_last and config.architecture == "conv":
        model = model.to(memory_format=torch.channels_last)
    return model


def make_stream(model: VAEModel, dataset, batch_size: int, seed: int) -> BatchStream:
    """The model's training stream: pairs for the weakly-supervised models, single images otherwise."""
    if model.needs_pairs:
        return PairStream(dataset, batch_size, seed, k=model.pair_k)
    return BatchStream(dataset, batch_size, seed)


def _scalar_terms(terms: dict[str, torch.Tensor]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in terms.items():
        value = value.detach().float().cpu() if isinstance(value, torch.Tensor) else value
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            out[key] = [float(v) for v in value.flatten()]
        else:
            out[key] = float(value)
    return out


class _RunLog:
    """Append-only JSONL log, started from ``kept_lines`` (on resume: the lines up to the checkpoint's step;
    the later ones will be redone)."""

    def __init__(self, path: Path, kept_lines: list[str]):
        self.path = path
        if kept_lines or path.exists():
            atomic_write_text(path, "".join(line + "\n" for line in kept_lines))
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _tensorboard_writer(run_dir: Path, resumed_at: int | None):
    """TensorBoard events, when the optional package is installed.  On resume, ``purge_step`` makes
    TensorBoard drop the earlier events after the checkpoint's step (they are redone, as in log.jsonl)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    purge_step = None if resumed_at is None else resumed_at + 1
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)


class _CheckpointTracker:
    """The step of the last checkpoint on disk (None: none yet), for what errors tell the user."""

    def __init__(self, step: int | None):
        self.step = step


def train(config: TrainConfig | None, run_dir: str | Path, resume: bool = False) -> Path:
    """Train ``config`` into ``run_dir`` (or continue the run there when ``resume``); return ``run_dir``.

    The process holds ``run_dir``'s lock (``.untwine-run.lock``) while it writes the run: a second
    ``train`` on the same directory raises :class:`~untwine.utils.locks.DirectoryLockedError` naming the
    holder.  A new run in a directory that holds one raises :class:`RunExistsError`; a directory that
    cannot be created or written, or a full disk, raises :class:`RunDirectoryError` naming the path (the
    last checkpoint stays intact: checkpoints are replaced atomically).  On resume, temporaries of killed
    writes are removed and a partial last line of ``log.jsonl`` is dropped.  Ctrl-C (SIGINT, in the main
    thread) finishes the step under way, writes its checkpoint and raises :class:`TrainingInterrupted`.

    ``config.threads`` (when not 0) sets torch's intra-op thread count for the run; the previous count
    is restored when ``train`` returns.
    """
    run_dir = Path(run_dir)
    if resume:
        load_run_config(run_dir)  # a missing or corrupt config.json is named before anything is locked
    elif config is None:
        raise ValueError("a config is required to start a new run")
    else:
        config.validate()
    tracker = _CheckpointTracker(None)
    try:
        with directory_lock(run_dir, LOCK_NAME, f"the run directory {run_dir}"):
            remove_stale_temporaries(run_dir)
            if resume:
                config, state, kept_lines = _resume_state(config, run_dir)
                tracker.step = None if state is None else int(state["step"])
            else:
                if (run_dir / CONFIG_NAME).exists():
                    raise RunExistsError(
                        f"{run_dir} already holds a run; continue it with `untwine train --resume {run_dir}` "
                        "or choose a new directory with --out"
                    )
                state, kept_lines = None, []
            threads_before = torch.get_num_threads()
            if config.threads:
                torch.set_num_threads(config.threads)
            try:
                return _run(config, run_dir, resume, state, kept_lines, tracker)
            finally:
                torch.set_num_threads(threads_before)
    except RunDirectoryError:
        raise
    except OSError as error:
        described = describe_write_error(error, run_dir, tracker.step)
        if described is None:
            raise
        raise described from error


def _resume_state(
    config: TrainConfig | None, run_dir: Path
) -> tuple[TrainConfig, dict[str, Any] | None, list[str]]:
    """The saved config, the last checkpoint (None before the first) and the log lines to keep."""
    saved = load_run_config(run_dir)
    if config is not None and config.to_dict() != saved.to_dict():
        raise ValueError(
            f"--resume uses the config saved in {run_dir / CONFIG_NAME}; do not pass another one"
        )
    checkpoint_path = run_dir / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    step = 0 if state is None else int(state["step"])
    return saved, state, read_log_lines(run_dir / LOG_NAME, keep_up_to_step=step)


def _run(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    state: dict[str, Any] | None,
    kept_lines: list[str],
    tracker: _CheckpointTracker,
) -> Path:
    """The run itself, top to bottom: model, optimisers, stream, then steps, logs and checkpoints."""
    checkpoint_path = run_dir / CHECKPOINT_NAME
    device = pick_device(config.device)
    dataset = get_dataset(config.dataset)
    seeds = RunSeeds.from_seed(config.seed)
    model = build_run_model(config, dataset.num_channels, device)
    # Semi-supervised models label a fixed subset of the dataset, chosen from the data seed (before the
    # optimisers: the labels can add parameters); the unsupervised models take nothing from it.
    model.attach_dataset(dataset, seeds.data)
    optimizers = model.make_optimizers(learning_rate=config.learning_rate)
    generator = torch.Generator(device=device).manual_seed(seeds.noise)
    stream = make_stream(model, dataset, config.batch_size, seeds.data)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        for optimizer, optimizer_state in zip(optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        generator.set_state(state["generator"])
        stream.load_state_dict(state["stream"])
        step = int(state["step"])
    if not resume:
        atomic_write_json(
            run_dir / CONFIG_NAME,
            {
                "config": config.to_dict(),
                "dataset": {
                    "name": dataset.name,
                    "factor_names": dataset.factor_names,
                    "factor_sizes": dataset.factor_sizes,
                    "observation_shape": dataset.observation_shape,
                },
                "seeds": seeds.__dict__,
                "device": str(device),
                "versions": library_versions(),
                "git_commit": git_commit(),
            },
        )

    def checkpoint(at_step: int) -> None:
        save_checkpoint(
            checkpoint_path,
            {
                "step": at_step,
                "model": model.state_dict(),
                "optimizers": [o.state_dict() for o in optimizers],
                "generator": generator.get_state(),
                "stream": stream.state_dict(),
            },
        )
        tracker.step = at_step

    def diverged_text() -> str:
        if tracker.step is None:
            first = min(config.checkpoint_every, config.steps)
            return (
                f"no checkpoint was written yet (the first is due at step {first}), so there is nothing to "
                "resume from; start a new run with a lower learning_rate or other model parameters"
            )
        return f"the last good checkpoint, of step {tracker.step}, is kept at {checkpoint_path}"

    log = _RunLog(run_dir / LOG_NAME, kept_lines)
    tensorboard = _tensorboard_writer(run_dir, step if resume else None)
    memory_format = torch.channels_last if config.channels_last and config.architecture == "conv" else None
    progress = None
    if config.progress:
        from tqdm.auto import tqdm

        # disable=None: a bar on terminals only, so CI logs and files are not flooded.
        progress = tqdm(
            total=config.steps,
            initial=step,
            desc=f"{config.model} on {config.dataset}",
            unit="step",
            dynamic_ncols=True,
            disable=None,
        )
    images_per_step = config.batch_size * (2 if model.needs_pairs else 1)
    interval_start, interval_steps = time.perf_counter(), 0
    model.train()
    try:
        with deferred_sigint() as interrupt:
            while step < config.steps:
                batch = next(stream).to(device, memory_format)
                try:
                    out = training_step(model, batch, step, generator, optimizers, bf16=config.bf16)
                except TrainingDivergedError as error:
                    raise TrainingDivergedError(f"{error}; {diverged_text()}") from None
                step += 1
                interval_steps += 1

                if step % config.log_every == 0 or step == config.steps:
                    elapsed = time.perf_counter() - interval_start
                    record = {
                        "step": step,
                        "loss": float(out.loss.detach()),
                        **_scalar_terms(out.terms),
                        # a pair model's step encodes and decodes both images of each pair
                        "images_per_second": interval_steps * images_per_step / max(elapsed, 1e-9),
                    }
                    log.write(record)
                    if tensorboard is not None:
                        for key, value in record.items():
                            if isinstance(value, float):
                                tensorboard.add_scalar(key, value, step)
                    if progress is not None:
                        progress.set_postfix(
                            loss=f"{record['loss']:.2f}", img_s=f"{record['images_per_second']:.0f}"
                        )
                    interval_start, interval_steps = time.perf_counter(), 0
                if progress is not None:
                    progress.update(1)
                if step % config.checkpoint_every == 0 or step == config.steps:
                    checkpoint(step)
                if interrupt.requested:
                    if tracker.step != step:
                        checkpoint(step)
                    raise TrainingInterrupted(step, str(run_dir))
    finally:
        log.close()
        if progress is not None:
            progress.close()
        if tensorboard is not None:
            tensorboard.close()

    atomic_write_json(
        run_dir / FINAL_EVAL_NAME, evaluate_held_out(model, dataset, config, seeds.eval, device)
    )
    if getattr(model, "validation_set", None) is not None:  # few-label models with a held-out split
        # imported here: the metrics pull in scikit-learn, which no other training run needs at start-up
        from untwine.training.validation import VALIDATION_NAME, validation_scores

        atomic_write_json(run_dir / VALIDATION_NAME, validation_scores(model, seeds.eval))
    return run_dir


@torch.no_grad()
def evaluate_held_out(model, dataset, config: TrainConfig, seed: int, device: torch.device) -> dict[str, Any]:
    """Loss terms averaged over ``config.eval_batches`` batches drawn from a separate seed."""
    model.eval()
    stream = make_stream(model, dataset, config.batch_size, seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    totals: dict[str, Any] = {}
    for _ in range(config.eval_batches):
        batch = next(stream).to(device)
        out = model.compute_loss(batch, config.steps, generator)
        terms = {"loss": float(out.loss), **_scalar_terms(out.terms)}
        for key, value in terms.items():
            totals[key] = (
                (np.asarray(totals[key]) + np.asarray(value)) if key in totals else np.asarray(value)
            )
    model.train()
    n = max(config.eval_batches, 1)
    result = {key: (value / n).tolist() for key, value in totals.items()}
    return {
        "step": config.steps,
        "num_batches": config.eval_batches,
        "batch_size": config.batch_size,
        "seed": seed,
        "terms": result,
        "finite": all(bool(np.isfinite(np.asarray(v)).all()) for v in result.values()),
    }


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config saved in ``run_dir``'s config.json (an error naming the file when it is missing or corrupt)."""
    path = Path(run_dir) / CONFIG_NAME
    try:
        return TrainConfig.from_dict(read_config_file(Path(run_dir))["config"])
    except (TypeError, ValueError) as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: {error}") from None
