"""Training throughput: the full training loop vs the bare training step of the same network.

For each model and channel count it measures
  * bound:  ``untwine.training.training_step`` -- the very update ``train()`` runs -- over one pre-made
            batch (no data, no logging, no checkpoints), in the memory format / precision the loop uses;
  * full:   ``untwine.training.train`` (data stream, model, logging, checkpoint cadence), images/s from the
            run's own log, excluding the first logging interval (warm-up);
and prints a markdown table with the ratio full/bound.  The pair models (``group_vae``, ``ml_vae``)
train on batches of 64 *pairs*; their rates count both images of a pair.  The semi-supervised models get
their labels as in training (``attach_dataset``) and encode a labelled batch besides the stream's 64
images (``ss_vae``: 16 more); their rates count the stream's images, so they show the cost per
unlabelled image.  Variants of the bound (NCHW vs channels_last,
fp32 vs bf16) are measured once to justify the defaults.

    python benchmarks/train_throughput.py [--steps 200] [--threads 1] [--models beta_vae,factor_vae]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from untwine.data import Batch, get_dataset
from untwine.models import build_model
from untwine.training import TrainConfig, train, training_step


def bare_loop(
    model_name: str,
    channels: int,
    steps: int,
    channels_last: bool,
    bf16: bool,
    batch: int = 64,
    dataset: str = "procedural_dsprites",
) -> float:
    model = build_model(model_name, num_channels=channels, init_generator=0)
    model.attach_dataset(get_dataset(dataset), 0)  # the semi-supervised models' labels, as in training
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizers = model.make_optimizers()
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, channels, 64, 64, generator=generator).round()
    batch_images = Batch(images)
    if model.needs_pairs:  # the other image of each pair: another batch; latent 0 "changed"
        second = torch.rand(batch, channels, 64, 64, generator=generator).round()
        batch_images = Batch(
            images, second_images=second, changed_factor=torch.zeros(batch, dtype=torch.long).numpy()
        )
    batch_images = batch_images.to("cpu", torch.channels_last if channels_last else None)

    def one_step(step: int) -> None:
        training_step(model, batch_images, step, generator, optimizers, bf16=bf16)

    for step in range(5):
        one_step(step)
    start = time.perf_counter()
    for step in range(steps):
        one_step(step)
    return steps * batch * (2 if model.needs_pairs else 1) / (time.perf_counter() - start)


def full_step(
    model_name: str, dataset: str, steps: int, threads: int, channels_last: bool, bf16: bool
) -> float:
    log_every = max(steps // 5, 1)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig.from_overrides(
            {
                "model": model_name,
                "dataset": dataset,
                "steps": steps,
                "log_every": log_every,
                "checkpoint_every": max(steps // 2, 1),
                "threads": threads,
                "progress": False,
                "eval_batches": 1,
                "channels_last": channels_last,
                "bf16": bf16,
            }
        )
        run = train(config, Path(tmp) / "run")
        rates = [
            json.loads(line)["images_per_second"] for line in (run / "log.jsonl").read_text().splitlines()
        ]
    return sum(rates[1:]) / len(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="beta_vae,factor_vae,beta_tc_vae,group_vae")
    parser.add_argument("--skip-variants", action="store_true")
    parser.add_argument(
        "--datasets",
        default="procedural_dsprites,procedural_shapes3d",
        help="ss_vae's default labels are dSprites' shapes: run it with --datasets procedural_dsprites",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, batch 64, steps {args.steps}\n")
    if not args.skip_variants:
        print("| bound variant (beta_vae, 64x64x1) | images/s |\n|---|---|")
        for channels_last, bf16 in ((False, False), (True, False), (True, True)):
            rate = bare_loop("beta_vae", 1, args.steps, channels_last, bf16)
            print(
                f"| {'channels_last' if channels_last else 'NCHW'} {'bf16 autocast' if bf16 else 'fp32'} | {rate:.0f} |"
            )
        print()
    print("| model | data | bound images/s | full step images/s | full / bound |\n|---|---|---|---|---|")
    for model_name in args.models.split(","):
        for dataset in args.datasets.split(","):
            channels = get_dataset(dataset).num_channels
            bound = bare_loop(model_name, channels, args.steps, True, False, dataset=dataset)
            full = full_step(model_name, dataset, args.steps, args.threads, True, False)
            print(
                f"| {model_name} | {dataset} (64x64x{channels}) | {bound:.0f} | {full:.0f} | {full / bound:.0%} |"
            )


if __name__ == "__main__":
    main()
