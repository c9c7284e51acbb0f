"""Semi-supervised experiments with the partially specified VAE (``ss_vae``), CPU-sized.

``digits``: scikit-learn's 1,797 handwritten 8x8 digits (``sklearn.datasets.load_digits``), a fixed
1,437 / 360 train/test split; ``q(y|x)`` is trained from 10, 20, 50 or 100 labelled training images
(class-balanced, chosen from the seed) plus all training images unlabelled, and its test error is
compared with a supervised-only classifier -- the same trunk and class head, cross-entropy on the same
labelled images, as many steps.  An analogy grid shows test digits re-drawn with their style ``z`` and
every class ``y``.

``dsprites``: ``untwine train model=ss_vae`` on procedural dSprites with the shape factor as ``y``
and 0.1 % / 1 % of the factor grid labelled; then shape accuracy of ``q(y|x)``, MIG (and DCI, when
``untwine.metrics`` provides it) of the style code ``z`` against scale, orientation and position, and
how well shape can be predicted from ``z`` alone.

    python -m untwine.experiments.semi_supervised digits --out runs/ss_digits
    python -m untwine.experiments.semi_supervised dsprites --out runs/ss_dsprites

Each writes ``results.json`` (every number, the settings, library versions, seconds), ``summary.md``
and its pictures into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from untwine.data import Batch, check_labels
from untwine.data.stream import to_torch_images
from untwine.models import instantiate
from untwine.models.ss_vae import SemiSupervisedVAE
from untwine.utils.io import atomic_write_json, atomic_write_text
from untwine.utils.versions import library_versions
from untwine.utils.workers import worker_pool

NUM_DIGITS = 10
DIGITS_TEST_SIZE = 360


# ---------------------------------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsData:
    x_train: np.ndarray  # (n, 8, 8, 1) float32 in [0, 1]
    y_train: np.ndarray  # (n,) int64
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(split_seed: int = 0, test_size: int = DIGITS_TEST_SIZE) -> DigitsData:
    """scikit-learn's digits as HWC float32 images in [0, 1] (pixel / 16), split by a seeded permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / np.float32(16.0))[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(labels.shape[0])
    test, train = order[:test_size], order[test_size:]
    return DigitsData(images[train], labels[train], images[test], labels[test])


def choose_labelled(labels, num_labels: int, seed: int, num_classes: int = NUM_DIGITS) -> np.ndarray:
    """Indices of ``num_labels`` labelled examples, class-balanced (``num_labels // K`` per class, the
    remainder spread over random classes), drawn from ``seed``; sorted."""
    labels = check_labels(labels, num_classes, "labels")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int | np.integer) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive int, got {num_labels!r}")
    if num_labels > labels.shape[0]:
        raise ValueError(f"num_labels={num_labels} exceeds the {labels.shape[0]} examples available")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    per_class, extra = divmod(int(num_labels), num_classes)
    chosen = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if pool.shape[0] < per_class:
            raise ValueError(f"labels has only {pool.shape[0]} examples of class {c}; {per_class} are needed")
        chosen.append(rng.choice(pool, per_class, replace=False))
    picked = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    if extra:
        rest = np.setdiff1d(np.arange(labels.shape[0]), picked)
        picked = np.concatenate([picked, rng.choice(rest, extra, replace=False)])
    return np.sort(picked).astype(np.int64)


@dataclass(frozen=True)
class DigitsConfig:
    num_labels: int = 10
    seed: int = 0
    steps: int = 3000
    batch_size: int = 64  # unlabelled images per step
    labelled_batch_size: int = 16  # labelled images per step (drawn with replacement)
    alpha: float = 1.0
    num_latents: int = 2  # style dimensions
    hidden: int = 128
    learning_rate: float = 1e-3
    num_samples: int = 1
    estimator: str = "weighted"
    split_seed: int = 0


def _digits_model(config: DigitsConfig) -> SemiSupervisedVAE:
    """The digits ss_vae, its weights drawn from a generator seeded with ``config.seed``."""
    return instantiate(
        SemiSupervisedVAE,
        torch.Generator().manual_seed(config.seed),
        1,
        config.num_latents,
        architecture="mlp",
        image_size=8,
        hidden=config.hidden,
        num_classes=NUM_DIGITS,
        alpha=config.alpha,
        labelled_batch_size=config.labelled_batch_size,
        num_samples=config.num_samples,
        estimator=config.estimator,
    )


@torch.no_grad()
def classification_error(model: SemiSupervisedVAE, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` (n, H, W, C) whose ``argmax q(y|x)`` differs from ``labels``."""
    labels = check_labels(labels, model.num_classes, "labels", len(images))
    model.eval()
    predictions = model.classify(to_torch_images(images)).argmax(1).numpy()
    model.train()
    return float(np.mean(predictions != labels))


def train_digits_ss_vae(
    data: DigitsData, labelled: np.ndarray, config: DigitsConfig, log_every: int = 0
) -> tuple[SemiSupervisedVAE, list[dict[str, float]]]:
    """Train ``ss_vae`` on every training image (unlabelled) plus the ``labelled`` indices' labels."""
    model = _digits_model(config)
    model.attach_labels(data.x_train[labelled], data.y_train[labelled])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    history = fit_semi_supervised(
        model,
        data.x_train,
        data.y_train,
        config.steps,
        optimizer,
        torch.Generator().manual_seed(config.seed),
        lambda: rng.integers(0, data.x_train.shape[0], config.batch_size),
        log_every,
    )
    return model, history


def fit_semi_supervised(
    model: SemiSupervisedVAE,
    x_train: np.ndarray,
    y_train: np.ndarray,
    steps: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    next_rows: Callable[[], np.ndarray],
    log_every: int = 0,
) -> list[dict[str, float]]:
    """``steps`` steps of ``model.compute_loss`` (its attached labelled set adds the labelled rows) on the
    unlabelled training images ``next_rows()`` picks each step; returns the logged scalar terms.

    ``y_train`` only feeds the logged accuracy on the unlabelled images, never the loss.  Leaves the model
    in eval mode.
    """
    images = to_torch_images(x_train)
    history = []
    for step in range(steps):
        rows = next_rows()
        out = model.compute_loss(Batch(images[rows], y_train[rows, None]), step, generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            history.append(
                {"step": step + 1, **{k: float(v) for k, v in out.terms.items() if v.numel() == 1}}
            )
    model.eval()
    return history


def fit_classifier(
    model: SemiSupervisedVAE,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
    betas: tuple[float, float] = (0.9, 0.999),
) -> None:
    """The supervised-only baseline: ``model``'s encoder trunk and class head trained by cross-entropy on
    ``images`` (N, C, H, W) and ``labels`` (N,) alone, ``batch_size`` rows a step drawn with replacement
    from ``generator``, Adam; the rest of the model is left as built.  Leaves the model in eval mode."""
    parameters = [*model.encoder.trunk.parameters(), *model.encoder.class_logits.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=learning_rate, betas=betas)
    for _ in range(steps):
        rows = torch.randint(images.shape[0], (batch_size,), generator=generator)
        loss = F.cross_entropy(model.classify(images[rows]), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def train_digits_supervised(
    data: DigitsData, labelled: np.ndarray, config: DigitsConfig
) -> SemiSupervisedVAE:
    """The supervised-only baseline on the digits: :func:`fit_classifier` on the labelled images
    (``labelled_batch_size`` per step, ``steps`` steps, the ss_vae's optimiser settings)."""
    model = _digits_model(config)
    images, labels = to_torch_images(data.x_train[labelled]), torch.from_numpy(data.y_train[labelled])
    fit_classifier(
        model,
        images,
        labels,
        config.steps,
        config.labelled_batch_size,
        config.learning_rate,
        torch.Generator().manual_seed(config.seed),
    )
    return model


@torch.no_grad()
def analogy_grid(
    model: SemiSupervisedVAE, images: np.ndarray, labels: np.ndarray, zoom: int = 4
) -> np.ndarray:
    """One row per image: the image, then ``p(x | y, z)`` means for y = 0..K-1 with z = mean of q(z | x, label).

    Returns an (R, 1 + K, H*zoom, W*zoom, C) array for :func:`untwine.visualisation.images.image_grid`.
    """
    labels = check_labels(labels, model.num_classes, "labels", len(images))
    model.eval()
    mean, _ = model.encode_style(to_torch_images(images), torch.from_numpy(labels))
    rows = []
    for i in range(len(images)):
        z = mean[i : i + 1].expand(model.num_classes, -1)
        decoded = (
            torch.sigmoid(model.decode(z, torch.arange(model.num_classes))).numpy().transpose(0, 2, 3, 1)
        )
        rows.append(np.concatenate([images[i : i + 1], decoded], 0))
    grid = np.stack(rows)
    return grid.repeat(zoom, axis=2).repeat(zoom, axis=3)


def _digits_job(config: DigitsConfig) -> dict[str, Any]:
    """One (alpha, label count, seed) cell: ss_vae and the supervised-only baseline, their test errors."""
    data = load_digits_split(config.split_seed)
    labelled = choose_labelled(data.y_train, config.num_labels, config.seed)
    start = time.perf_counter()
    model, history = train_digits_ss_vae(data, labelled, config, log_every=max(config.steps // 10, 1))
    ss_seconds = time.perf_counter() - start
    start = time.perf_counter()
    baseline = train_digits_supervised(data, labelled, config)
    sup_seconds = time.perf_counter() - start
    return {
        "config": dataclasses.asdict(config),
        "labelled_indices": labelled.tolist(),
        "ss_vae_test_error": classification_error(model, data.x_test, data.y_test),
        "supervised_test_error": classification_error(baseline, data.x_test, data.y_test),
        "ss_vae_train_error": classification_error(model, data.x_train, data.y_train),
        "ss_vae_seconds": ss_seconds,
        "supervised_seconds": sup_seconds,
        "final_terms": history[-1] if history else {},
        "history": history,
    }


def _digits_job_in_worker(config: DigitsConfig) -> dict[str, Any]:
    # The pool sets OMP_NUM_THREADS=1 in its workers, but a worker started from `python -m` re-imports
    # this module (and torch) before that applies, so the thread count is also set here.
    torch.set_num_threads(1)
    return _digits_job(config)


def run_digits(
    out_dir: str | Path,
    label_counts: Sequence[int] = (10, 20, 50, 100),
    seeds: Sequence[int] = (0, 1, 2),
    alphas: Sequence[float] = (0.1, 1.0),
    jobs: int = 1,
    **overrides: Any,
) -> dict[str, Any]:
    """Every (alpha, label count, seed): ss_vae and supervised-only test errors; writes results and pictures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = [
        DigitsConfig(num_labels=n, seed=s, alpha=a, **overrides)
        for a in alphas
        for n in label_counts
        for s in seeds
    ]
    start = time.perf_counter()
    if jobs > 1:
        with worker_pool(jobs, threads=1) as pool:
            runs = list(pool.map(_digits_job_in_worker, configs))
    else:
        runs = [_digits_job(c) for c in configs]
    table = []
    for a in alphas:
        for n in label_counts:
            rows = [r for r in runs if r["config"]["alpha"] == a and r["config"]["num_labels"] == n]
            ss = np.array([r["ss_vae_test_error"] for r in rows])
            sup = np.array([r["supervised_test_error"] for r in rows])
            table.append(
                {
                    "alpha": a,
                    "num_labels": n,
                    "seeds": [r["config"]["seed"] for r in rows],
                    "ss_vae_test_error_mean": float(ss.mean()),
                    "ss_vae_test_error_std": float(ss.std()),
                    "supervised_test_error_mean": float(sup.mean()),
                    "supervised_test_error_std": float(sup.std()),
                    "ss_vae_test_errors": ss.tolist(),
                    "supervised_test_errors": sup.tolist(),
                }
            )
    # Analogy grid from the first configuration with the most labels of the last alpha.
    picture = None
    best = DigitsConfig(num_labels=max(label_counts), seed=seeds[0], alpha=alphas[-1], **overrides)
    data = load_digits_split(best.split_seed)
    model, _ = train_digits_ss_vae(data, choose_labelled(data.y_train, best.num_labels, best.seed), best)
    rows = np.array([int(np.flatnonzero(data.y_test == c)[0]) for c in range(NUM_DIGITS)])
    from untwine.visualisation.images import image_grid, save_png

    picture = out_dir / "digits_analogies.png"
    save_png(
        picture, image_grid(analogy_grid(model, data.x_test[rows], data.y_test[rows]), pad=2, pad_value=0.5)
    )
    results = {
        "experiment": "digits",
        "table": table,
        "runs": runs,
        "analogy_grid": picture.name,
        "analogy_config": dataclasses.asdict(best),
        "seconds": time.perf_counter() - start,
        "versions": library_versions(),
        "jobs": jobs,
    }
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "summary.md", digits_summary(results))
    return results


def digits_summary(results: dict[str, Any]) -> str:
    lines = [
        "| alpha | labels | ss_vae test error | supervised-only test error | seeds |",
        "|---|---|---|---|---|",
    ]
    for row in results["table"]:
        lines.append(
            f"| {row['alpha']:g} | {row['num_labels']} | "
            f"{100 * row['ss_vae_test_error_mean']:.1f} ± {100 * row['ss_vae_test_error_std']:.1f} % | "
            f"{100 * row['supervised_test_error_mean']:.1f} ± {100 * row['supervised_test_error_std']:.1f} % | "
            f"{', '.join(map(str, row['seeds']))} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Procedural dSprites, through the training loop
# ---------------------------------------------------------------------------------------------------
def _dci(codes_train, factors_train, codes_test, factors_test, seed: int = 0) -> dict[str, Any]:
    """DCI of ``untwine.metrics.dci`` in its fast (binned boosted trees) mode."""
    from untwine.metrics.dci import dci

    scores, details = dci(
        codes_train,
        factors_train,
        codes_test,
        factors_test,
        fast=True,
        random_state=seed,
        return_matrices=True,
    )
    return {
        **{k: float(v) for k, v in scores.items()},
        "test_accuracy_per_factor": np.asarray(details["test_accuracy_per_factor"]).tolist(),
        "importance_matrix": np.asarray(details["importance_matrix"]).tolist(),
        "mode": "fast",
    }


def _mig(codes, factors) -> dict[str, Any]:
    from untwine.metrics.mig import mig

    scores, matrices = mig(codes, factors, return_matrices=True)
    return {**scores, "mig_per_factor": matrices["mig_per_factor"].tolist()}


def shape_predictability(
    codes_train, labels_train, codes_test, labels_test, seed: int = 0
) -> dict[str, float]:
    """Test accuracy of predicting the label from codes: multinomial logistic regression and boosted trees."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(codes_train)
    linear = LogisticRegression(max_iter=2000).fit(scaler.transform(codes_train), labels_train)
    trees = HistGradientBoostingClassifier(random_state=seed).fit(codes_train, labels_train)
    return {
        "logistic_accuracy": float(linear.score(scaler.transform(codes_test), labels_test)),
        "boosted_trees_accuracy": float(trees.score(codes_test, labels_test)),
    }


@torch.no_grad()
def evaluate_dsprites_run(run_dir: str | Path, num_points: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Shape accuracy of q(y|x) and the style code's MIG / DCI / shape predictability on fresh samples."""
    from untwine.data import get_dataset
    from untwine.training.representation import Encoder, load_trained_model

    config, model = load_trained_model(run_dir, "cpu")
    dataset = get_dataset(config.dataset)
    rng = np.random.default_rng(seed)
    factors, images = dataset.sample(2 * num_points, rng)
    logits = []
    for start in range(0, images.shape[0], 256):
        chunk = to_torch_images(images[start : start + 256])
        if any(
            p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            for p in model.parameters()
        ):
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        logits.append(model.classify(chunk).float())
    predicted = torch.cat(logits).argmax(1).numpy()
    label_factor = model.label_factor
    codes, _ = Encoder(model).mean_logvar(images)  # style z under argmax q(y|x)
    labels = factors[:, label_factor]
    others = [i for i in range(dataset.num_factors) if i != label_factor]
    train, test = slice(0, num_points), slice(num_points, 2 * num_points)
    confusion = np.zeros((model.num_classes, model.num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    result = {
        "label_factor": dataset.factor_names[label_factor],
        "label_accuracy": float(np.mean(predicted == labels)),
        "confusion": confusion.tolist(),
        "other_factors": [dataset.factor_names[i] for i in others],
        "mig_style_vs_other_factors": _mig(codes[test], factors[test][:, others]),
        "mig_style_vs_all_factors": _mig(codes[test], factors[test]),
        "dci_style_vs_other_factors": _dci(
            codes[train], factors[train][:, others], codes[test], factors[test][:, others]
        ),
        "label_from_style": shape_predictability(
            codes[train], labels[train], codes[test], labels[test], seed
        ),
        "num_points": num_points,
    }
    return result


def run_dsprites(
    out_dir: str | Path,
    fractions: Sequence[float] = (0.001, 0.01),
    steps: int = 400,
    seed: int = 0,
    alpha: float = 100.0,
    batch_size: int = 32,
    labelled_batch_size: int = 32,
    learning_rate: float = 1e-3,
    num_latents: int = 6,
    threads: int = 2,
    num_points: int = 4000,
    evaluate_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one ss_vae run per labelled fraction with the training loop
    (``evaluate_only``: score the runs already in ``out_dir`` again)."""
    from untwine.training import TrainConfig, train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runs = []
    for fraction in fractions:
        overrides = [
            "model=ss_vae",
            "dataset=procedural_dsprites",
            f"steps={steps}",
            f"batch_size={batch_size}",
            f"seed={seed}",
            f"learning_rate={learning_rate}",
            f"num_latents={num_latents}",
            f"threads={threads}",
            "progress=false",
            f"checkpoint_every={steps}",
            f"log_every={max(steps // 100, 1)}",
            "eval_batches=4",
            "device=cpu",
            f"model.labelled_fraction={fraction}",
            f"model.alpha={alpha}",
            f"model.labelled_batch_size={labelled_batch_size}",
        ]
        run_dir = out_dir / f"fraction_{fraction:g}"
        t0 = time.perf_counter()
        if evaluate_only:
            previous = (
                json.loads((out_dir / "results.json").read_text())
                if (out_dir / "results.json").exists()
                else {}
            )
            train_seconds = next(
                (r["train_seconds"] for r in previous.get("runs", []) if r["labelled_fraction"] == fraction),
                None,
            )
        else:
            train(TrainConfig.from_overrides(overrides), run_dir)
            train_seconds = time.perf_counter() - t0
        evaluation = evaluate_dsprites_run(run_dir, num_points=num_points, seed=seed + 1)
        final = json.loads((run_dir / "final_eval.json").read_text())["terms"]
        runs.append(
            {
                "labelled_fraction": fraction,
                "run_dir": run_dir.name,
                "command": "untwine train " + " ".join(overrides),
                "train_seconds": train_seconds,
                "final_eval": final,
                "label_accuracy_curve": label_accuracy_curve(run_dir / "log.jsonl"),
                **evaluation,
            }
        )
    results = {
        "experiment": "dsprites",
        "runs": runs,
        "seconds": time.perf_counter() - start,
        "versions": library_versions(),
    }
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "summary.md", dsprites_summary(results))
    return results


def label_accuracy_curve(log_path: str | Path, windows: int = 10) -> list[dict[str, float]]:
    """How ``q(y|x)``'s accuracy on the unlabelled batches grew: the logged ``accuracy_unlabelled`` values
    (one batch each) averaged over ``windows`` consecutive, equal-count groups of log records.

    Returns one ``{"step": last step of the group, "accuracy": mean, "batches": records}`` per group.
    """
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    records = [r for r in records if "accuracy_unlabelled" in r]
    if not records:
        raise ValueError(f"{log_path} has no accuracy_unlabelled records (is it an ss_vae run's log?)")
    groups = [g for g in np.array_split(np.arange(len(records)), min(windows, len(records))) if g.size]
    return [
        {
            "step": int(records[g[-1]]["step"]),
            "accuracy": float(np.mean([records[i]["accuracy_unlabelled"] for i in g])),
            "batches": int(g.size),
        }
        for g in groups
    ]


def dsprites_summary(results: dict[str, Any]) -> str:
    lines = [
        "| labelled | shape accuracy | MIG(z; other factors) | DCI D/C/I (z; other) | shape from z (logistic / trees) |",
        "|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        dci = run["dci_style_vs_other_factors"]
        dci_text = (
            "n/a"
            if dci is None
            else " / ".join(
                f"{dci.get(k, float('nan')):.2f}"
                for k in ("disentanglement", "completeness", "informativeness_test")
            )
        )
        pred = run["label_from_style"]
        lines.append(
            f"| {100 * run['labelled_fraction']:g} % | {100 * run['label_accuracy']:.1f} % | "
            f"{run['mig_style_vs_other_factors']['discrete_mig']:.3f} | {dci_text} | "
            f"{100 * pred['logistic_accuracy']:.1f} % / {100 * pred['boosted_trees_accuracy']:.1f} % |"
        )
    for run in results["runs"]:
        curve = run.get("label_accuracy_curve")
        if curve:
            points = ", ".join(f"{c['step']}: {100 * c['accuracy']:.0f} %" for c in curve)
            lines.append(
                f"\n{100 * run['labelled_fraction']:g} % labelled, q(y|x) accuracy by step: {points}"
            )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m untwine.experiments.semi_supervised",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="experiment", required=True)
    digits = sub.add_parser("digits", help="sklearn digits: test error vs. number of labels")
    digits.add_argument("--out", type=Path, required=True)
    digits.add_argument("--labels", type=int, nargs="+", default=[10, 20, 50, 100])
    digits.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    digits.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0])
    digits.add_argument("--steps", type=int, default=DigitsConfig.steps)
    digits.add_argument("--jobs", type=int, default=1, help="parallel processes (one thread each)")
    sprites = sub.add_parser("dsprites", help="procedural dSprites, shape as the labelled factor")
    sprites.add_argument("--out", type=Path, required=True)
    sprites.add_argument("--fractions", type=float, nargs="+", default=[0.001, 0.01])
    sprites.add_argument("--steps", type=int, default=400)
    sprites.add_argument("--alpha", type=float, default=100.0)
    sprites.add_argument("--seed", type=int, default=0)
    sprites.add_argument("--threads", type=int, default=2)
    sprites.add_argument("--evaluate-only", action="store_true", help="score the runs already in --out again")
    args = parser.parse_args(argv)
    if args.experiment == "digits":
        results = run_digits(args.out, args.labels, args.seeds, args.alphas, jobs=args.jobs, steps=args.steps)
        print(digits_summary(results))
    else:
        results = run_dsprites(
            args.out,
            args.fractions,
            steps=args.steps,
            seed=args.seed,
            alpha=args.alpha,
            threads=args.threads,
            evaluate_only=args.evaluate_only,
        )
        print(dsprites_summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
