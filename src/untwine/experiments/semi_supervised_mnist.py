"""The MNIST experiment of Siddharth et al. (NeurIPS 2017) on 28x28 MNIST-format data, CPU-sized.

Test error of ``argmax q(y|x)`` with 100 / 600 / 1,000 / 3,000 labelled training images (class-balanced,
chosen from the seed; every training image is also used unlabelled), for three methods on the same
labelled subsets, networks and optimiser:

* ``ss_vae`` -- the paper's partially specified VAE as the authors' released code trains it (probtorch's
  ``examples/mnist-semisupervised.ipynb``): encoder 784-256 ReLU, ``q(y|x)`` a softmax head, ``q(z|x,y)``
  Gaussian heads on ``[h, y]`` for 50 style dimensions; decoder ``[z, y]``-256 ReLU-784 Bernoulli;
  unlabelled ``y`` as a Concrete sample at temperature 0.66; 8 importance samples; alpha = 0.1; Adam
  (lr 1e-3, betas 0.9 / 0.999); 128 unlabelled images a step.
* ``m2`` -- Kingma et al. (2014)'s M2, the special case the paper compares with: the same networks, ``y``
  summed out exactly for unlabelled images (one decoder pass per class), one sample, and the classifier
  weighted as in Kingma et al.: ``alpha * E_labelled[-log q(y|x)]`` with ``alpha = 0.1 N`` against an
  objective summed over the N training images, i.e. 0.1 per image of the mean objective.  Here the loss is
  the mean over the ``batch_size + labelled_batch_size`` images of a step, so the labelled rows carry
  ``alpha = 0.1 (batch_size + labelled_batch_size) / labelled_batch_size`` each.
* ``supervised`` -- supervised-only: the same encoder layer and class head trained by cross-entropy on the
  labelled images alone, as many steps, ``labelled_batch_size`` a step, same optimiser.

Where untwine departs from the authors' code (it is said here because the numbers depend on it): the
labelled images are a fixed class-balanced subset of exactly ``num_labels`` images, ``labelled_batch_size``
of which are drawn into every step next to the unlabelled batch (the notebook marks whole batches as
labelled with probability 0.1, so it has no fixed label count); the Bernoulli likelihood is computed from
logits rather than ``sigmoid`` + ``log(p + 1e-9)``; training runs ``steps`` steps, not 200 epochs.

    python -m untwine.experiments.semi_supervised_mnist --dataset fashion_mnist --out runs/ss_fashion
    python -m untwine.experiments.semi_supervised_mnist --dataset mnist --out runs/ss_mnist  # MNIST's IDX
        # files under $UNTWINE_DATA/mnist (``untwine data download mnist``)

Writes ``results.json`` (every run's test error, settings, seconds, library versions), ``summary.md``
(the table beside the paper's MNIST table) and pictures (analogies, style traversals) into ``--out``;
each run is also written to ``--out/runs/`` as it finishes, and a second call with the same settings
reuses those files (an interrupted experiment resumes; a run with other settings is trained again).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from untwine.data.idx import FASHION_MNIST_CLASSES, read_dataset_split
from untwine.data.stream import to_torch_images
from untwine.experiments.semi_supervised import (
    analogy_grid,
    choose_labelled,
    classification_error,
    fit_classifier,
    fit_semi_supervised,
)
from untwine.models import instantiate
from untwine.models.ss_vae import SemiSupervisedVAE
from untwine.utils.io import atomic_write_json, atomic_write_text
from untwine.utils.versions import library_versions
from untwine.utils.workers import worker_pool

METHODS = ("ss_vae", "m2", "supervised")
DATASETS = ("fashion_mnist", "mnist")
NUM_CLASSES = 10
IMAGE_SIZE = 28

#: Test error (%) on MNIST, mean (std) over runs: Siddharth et al. 2017, Table 1 ("Ours"), and Kingma et
#: al. 2014, Table 1 (M2), which the former reprints.  Transcribed from the papers; see docs/results.md.
PAPER_MNIST_TABLE = {
    100: {"ss_vae": (9.71, 0.91), "m2": (11.97, 1.71)},
    600: {"ss_vae": (3.84, 0.86), "m2": (4.94, 0.13)},
    1000: {"ss_vae": (2.88, 0.79), "m2": (3.60, 0.56)},
    3000: {"ss_vae": (1.57, 0.93), "m2": (3.92, 0.63)},
}


@dataclass(frozen=True)
class ImageSplit:
    """A labelled image classification set: (n, 28, 28, 1) float32 images in [0, 1] and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def load_split(dataset: str, data_root: str | Path | None = None) -> ImageSplit:
    """The published train / test split of ``mnist`` or ``fashion_mnist`` (see :mod:`untwine.data.idx`)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    arrays = []
    for split in ("train", "test"):
        images, labels, _ = read_dataset_split(dataset, split, data_root)
        arrays += [(images.astype(np.float32) / np.float32(255.0))[..., np.newaxis], labels]
    names = FASHION_MNIST_CLASSES if dataset == "fashion_mnist" else tuple(str(c) for c in range(10))
    return ImageSplit(*arrays, class_names=names)


@dataclass(frozen=True)
class RunConfig:
    """One run: a method, a labelled-subset size and a seed (labelled subset, weights, noise, batches)."""

    method: str = "ss_vae"
    dataset: str = "fashion_mnist"
    num_labels: int = 100
    seed: int = 0
    steps: int = 4000
    batch_size: int = 128  # unlabelled images a step (the authors' NUM_BATCH)
    labelled_batch_size: int = 32  # labelled images a step, drawn with replacement from the subset
    num_latents: int = 50  # style dimensions (NUM_STYLE)
    hidden: int = 256  # one hidden layer in encoder and decoder (NUM_HIDDEN)
    learning_rate: float = 1e-3
    beta1: float = 0.9  # Adam's first beta (BETA1); the second is 0.999
    temperature: float = 0.66  # the Concrete temperature of the released code
    num_samples: int = 8  # importance samples for ss_vae (NUM_SAMPLES); M2 uses 1
    alpha: float = 0.1  # ss_vae's classifier weight (elbo(..., alpha=0.1)); M2's is derived, see below

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name in ("num_labels", "steps", "batch_size", "labelled_batch_size", "num_latents", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def m2_alpha(self) -> float:
        """Kingma et al.'s alpha = 0.1 N per labelled row of this run's mean loss (module docstring)."""
        return 0.1 * (self.batch_size + self.labelled_batch_size) / self.labelled_batch_size

    def model_kwargs(self) -> dict[str, Any]:
        """The ``SemiSupervisedVAE`` settings of this run's method."""
        common = {
            "architecture": "mlp",
            "image_size": IMAGE_SIZE,
            "hidden": self.hidden,
            "hidden_layers": 1,
            "num_classes": NUM_CLASSES,
            "labelled_batch_size": self.labelled_batch_size,
            "estimator": "weighted",
        }
        if self.method == "m2":
            return {**common, "unlabelled": "enumerate", "num_samples": 1, "alpha": self.m2_alpha}
        return {
            **common,
            "unlabelled": "concrete",
            "num_samples": self.num_samples,
            "alpha": self.alpha,
            "temperature": self.temperature,
        }


def build(config: RunConfig) -> SemiSupervisedVAE:
    """The run's model, its weights drawn from a generator seeded with ``config.seed``."""
    return instantiate(
        SemiSupervisedVAE,
        torch.Generator().manual_seed(config.seed),
        1,
        config.num_latents,
        **config.model_kwargs(),
    )


def train_run(
    data: ImageSplit, labelled: np.ndarray, config: RunConfig, log_every: int = 0
) -> tuple[SemiSupervisedVAE, list[dict[str, float]]]:
    """Train one run: ``ss_vae`` / ``m2`` on every training image plus the labelled subset, or the
    supervised-only classifier on the labelled subset alone.  Unlabelled batches walk a fresh permutation
    of the training set each epoch; every draw comes from ``config.seed``."""
    model = build(config)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    betas = (config.beta1, 0.999)
    if config.method == "supervised":
        images = to_torch_images(data.x_train[labelled])
        labels = torch.from_numpy(data.y_train[labelled])
        fit_classifier(
            model,
            images,
            labels,
            config.steps,
            config.labelled_batch_size,
            config.learning_rate,
            generator,
            betas,
        )
        return model, history
    model.attach_labels(data.x_train[labelled], data.y_train[labelled])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=betas)
    history = fit_semi_supervised(
        model,
        data.x_train,
        data.y_train,
        config.steps,
        optimizer,
        generator,
        epoch_batches(data.x_train.shape[0], config.batch_size, config.seed).__next__,
        log_every,
    )
    return model, history


def epoch_batches(num_images: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Batches of ``batch_size`` rows walking a fresh permutation of ``num_images`` each epoch (a partial
    last batch is dropped, as the notebook's loop does), drawn from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    while True:
        order = rng.permutation(num_images)
        for start in range(0, num_images - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


def run_one(config: RunConfig, data_root: str | None = None) -> dict[str, Any]:
    """Train one run and measure its test error; the labelled subset depends on the seed only."""
    data = load_split(config.dataset, data_root)
    labelled = choose_labelled(data.y_train, config.num_labels, config.seed)
    start = time.perf_counter()
    model, history = train_run(data, labelled, config, log_every=max(config.steps // 20, 1))
    seconds = time.perf_counter() - start
    return {
        "config": dataclasses.asdict(config),
        "model_settings": config.model_kwargs(),
        "labelled_indices": labelled.tolist(),
        "test_error": classification_error(model, data.x_test, data.y_test),
        "train_error": classification_error(model, data.x_train, data.y_train),
        "seconds": seconds,
        "history": history,
    }


def _run_file(out_dir: Path, config: RunConfig) -> Path:
    return out_dir / "runs" / f"{config.method}_{config.num_labels}_seed{config.seed}.json"


def _finished(out_dir: Path, config: RunConfig) -> dict[str, Any] | None:
    """A run already written by an earlier (interrupted) call with exactly this configuration, or None."""
    path = _run_file(out_dir, config)
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    return run if run.get("config") == dataclasses.asdict(config) else None


def _keep(out_dir: Path, run: dict[str, Any], done: dict[RunConfig, Any]) -> None:
    """Write one finished run at once, so an interrupted experiment resumes where it stopped."""
    config = RunConfig(**run["config"])
    atomic_write_json(_run_file(out_dir, config), run)
    done[config] = run


def _run_in_worker(config: RunConfig, data_root: str | None) -> dict[str, Any]:
    torch.set_num_threads(1)  # a spawned worker imports torch before the pool's OMP setting applies
    return run_one(config, data_root)


@torch.no_grad()
def style_traversal_grid(
    model: SemiSupervisedVAE,
    image: np.ndarray,
    label: int,
    num_dims: int = 8,
    span: float = 2.5,
    steps: int = 9,
) -> tuple[np.ndarray, list[int]]:
    """Rows: the ``num_dims`` style dimensions with the largest KL for ``image``'s class, each swept over
    ``[-span, span]`` (``steps`` values) with the other dimensions at the mean of ``q(z | image, label)``.

    Returns an (num_dims, steps, 28, 28, 1) array of ``p(x | y=label, z)`` means and the dimensions shown.
    """
    model.eval()
    x = to_torch_images(image[np.newaxis])
    mean, logvar = model.encode_style(x, torch.tensor([label]))
    kl = 0.5 * (mean.square() + logvar.exp() - logvar - 1.0)[0]
    dims = [int(d) for d in torch.argsort(kl, descending=True)[:num_dims]]
    values = torch.linspace(-span, span, steps)
    rows = []
    for d in dims:
        z = mean.expand(steps, -1).clone()
        z[:, d] = values
        decoded = torch.sigmoid(model.decode(z, torch.full((steps,), label)))
        rows.append(decoded.numpy().transpose(0, 2, 3, 1))
    return np.stack(rows), dims


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation of test error per (label count, method), in METHODS order."""
    table = []
    for n in sorted({r["config"]["num_labels"] for r in runs}):
        for method in METHODS:
            cell = [r for r in runs if r["config"]["num_labels"] == n and r["config"]["method"] == method]
            if not cell:
                continue
            errors = np.array([r["test_error"] for r in cell])
            table.append(
                {
                    "num_labels": n,
                    "method": method,
                    "test_error_mean": float(errors.mean()),
                    "test_error_std": float(errors.std(ddof=1)) if errors.size > 1 else 0.0,
                    "test_errors": errors.tolist(),
                    "seeds": [r["config"]["seed"] for r in cell],
                }
            )
    return table


def summary_markdown(results: dict[str, Any]) -> str:
    """The results table with the paper's MNIST numbers beside it."""
    cells = {(row["num_labels"], row["method"]): row for row in results["table"]}

    def ours(n: int, method: str) -> str:
        row = cells.get((n, method))
        if row is None:
            return "--"
        return f"{100 * row['test_error_mean']:.2f} ± {100 * row['test_error_std']:.2f}"

    def paper(n: int, method: str) -> str:
        value = PAPER_MNIST_TABLE.get(n, {}).get(method)
        return "--" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"

    dataset = results["dataset"]
    lines = [
        f"| labels | ss_vae ({dataset}) | M2 ({dataset}) | supervised-only ({dataset}) "
        "| paper: Siddharth et al. (MNIST) | paper: M2 (MNIST) |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted({n for n, _ in cells}):
        lines.append(
            f"| {n} | {ours(n, 'ss_vae')} | {ours(n, 'm2')} | {ours(n, 'supervised')} "
            f"| {paper(n, 'ss_vae')} | {paper(n, 'm2')} |"
        )
    seeds = sorted({s for row in results["table"] for s in row["seeds"]})
    lines.append("")
    lines.append(
        f"Test error in %, mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}."
    )
    return "\n".join(lines) + "\n"


def run_experiment(
    out_dir: str | Path,
    dataset: str = "fashion_mnist",
    label_counts: Sequence[int] = (100, 600, 1000, 3000),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    methods: Sequence[str] = METHODS,
    jobs: int = 1,
    data_root: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Every (method, label count, seed) run, the summary table and the pictures, written to ``out_dir``."""
    out_dir = Path(out_dir)
    configs = [
        RunConfig(method=m, dataset=dataset, num_labels=n, seed=s, **overrides)
        for m in methods
        for n in label_counts
        for s in seeds
    ]
    data = load_split(dataset, data_root)  # refuse missing or corrupt files before any training
    for n in label_counts:
        choose_labelled(data.y_train, n, 0)  # and label counts the training set cannot supply
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "runs").mkdir(exist_ok=True)
    start = time.perf_counter()
    done = {c: _finished(out_dir, c) for c in configs}
    todo = [c for c in configs if done[c] is None]
    if jobs > 1 and len(todo) > 1:
        with worker_pool(jobs, threads=1) as pool:
            futures = [pool.submit(_run_in_worker, c, data_root) for c in todo]
            for future in as_completed(futures):
                _keep(out_dir, future.result(), done)
    else:
        for c in todo:
            _keep(out_dir, run_one(c, data_root), done)
    runs = [done[c] for c in configs]
    results: dict[str, Any] = {
        "experiment": "semi_supervised_mnist",
        "dataset": dataset,
        "table": summarise(runs),
        "runs": runs,
        "paper_mnist_table": {str(k): v for k, v in PAPER_MNIST_TABLE.items()},
        "jobs": jobs,
        "versions": library_versions(),
    }
    if "ss_vae" in methods:
        results["pictures"] = save_pictures(out_dir, data, max(label_counts), seeds[0], dataset, overrides)
    results["seconds"] = time.perf_counter() - start
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "summary.md", summary_markdown(results))
    return results


def save_pictures(
    out_dir: Path, data: ImageSplit, num_labels: int, seed: int, dataset: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Analogies (each test image's style under every class) and style traversals of one ss_vae run."""
    from untwine.visualisation.images import image_grid, save_png

    config = RunConfig(method="ss_vae", dataset=dataset, num_labels=num_labels, seed=seed, **overrides)
    model, _ = train_run(data, choose_labelled(data.y_train, num_labels, seed), config)
    rows = np.array([int(np.flatnonzero(data.y_test == c)[0]) for c in range(NUM_CLASSES)])
    analogies = out_dir / f"{dataset}_analogies.png"
    grid = analogy_grid(model, data.x_test[rows], data.y_test[rows], zoom=2)
    save_png(analogies, image_grid(grid, pad=2, pad_value=0.5))
    traversals = []
    for c in (0, NUM_CLASSES // 2):
        index = rows[c]
        sweep, dims = style_traversal_grid(model, data.x_test[index], int(data.y_test[index]))
        path = out_dir / f"{dataset}_style_traversal_class{c}.png"
        save_png(path, image_grid(sweep.repeat(2, axis=2).repeat(2, axis=3), pad=2, pad_value=0.5))
        traversals.append(
            {"file": path.name, "class": data.class_names[c], "test_index": int(index), "dims": dims}
        )
    return {"analogies": analogies.name, "traversals": traversals, "config": dataclasses.asdict(config)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m untwine.experiments.semi_supervised_mnist",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion_mnist")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 600, 1000, 3000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", choices=METHODS, nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=RunConfig.steps, help="training steps per run")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (one thread each)")
    parser.add_argument("--data-root", default=None, help="data root (default $UNTWINE_DATA)")
    args = parser.parse_args(argv)
    results = run_experiment(
        args.out,
        args.dataset,
        args.labels,
        args.seeds,
        args.methods,
        jobs=args.jobs,
        data_root=args.data_root,
        steps=args.steps,
    )
    print(summary_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
