"""UDR across a study (Duan et al. 2020): the models of one hyperparameter setting -- same dataset, model
and value, different seeds -- are compared with each other, and each gets its UDR score.

This runs after the models are trained (``untwine study udr STUDY_DIR``): it reads the finished runs
from the study's store, encodes the same ``num_points`` images of the dataset with every model of a
setting (:func:`untwine.metrics.udr.udr_score`), and stores each model's score as the metric ``udr``
of its mean representation -- in ``RUN_DIR/metrics/mean/udr.json`` and in the study store -- with the
setting's other models and the pairwise scores in the result.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from untwine.metrics.output import write_result
from untwine.studies.records import Evaluation
from untwine.utils.io import to_jsonable
from untwine.utils.versions import git_commit, library_versions


@dataclass(frozen=True)
class UdrGroup:
    """One hyperparameter setting's UDR: its models (by number) and their scores, in the same order."""

    dataset: str
    model: str
    parameter: str
    value: float
    model_nums: tuple[int, ...]
    scores: tuple[float, ...]


def settings_of(runs: list[dict]) -> dict[tuple, list[dict]]:
    """Finished runs grouped by (dataset, model, parameter, value index), seeds in order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        if run["status"] == "done":
            groups[(run["dataset"], run["model"], run["parameter"], run["value_index"])].append(run)
    return {key: sorted(members, key=lambda r: r["seed"]) for key, members in groups.items()}


def study_udr(
    study_dir: str | Path,
    *,
    num_points: int = 1000,
    correlation: str = "lasso",
    seed: int = 0,
    device: str = "cpu",
    store=None,
) -> list[UdrGroup]:
    """Compute and store UDR for every setting of the study with at least two finished models."""
    from untwine.data import get_dataset
    from untwine.metrics.udr import CORRELATIONS, udr_score
    from untwine.studies.runner import load_study_file, open_study_store, run_dir_for
    from untwine.training.representation import representation_function

    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    load_study_file(study_dir)  # a clear error for a directory that is not a study
    store, opened = open_study_store(study_dir, store)
    groups = []
    try:
        for (dataset_name, model, parameter, _), runs in sorted(settings_of(store.runs()).items()):
            if len(runs) < 2:
                continue
            nums = tuple(int(r["model_num"]) for r in runs)
            encoders = [
                representation_function(run_dir_for(study_dir, n), "mean", device=device) for n in nums
            ]
            start = time.perf_counter()
            scores = udr_score(
                get_dataset(dataset_name), encoders, seed, num_points=num_points, correlation=correlation
            )
            seconds = time.perf_counter() - start
            versions, commit = library_versions(), git_commit()
            for i, num in enumerate(nums):
                result = {
                    "metric": "udr",
                    "values": {"model_score": scores["model_scores"][i]},
                    "parameters": {"num_points": num_points, "correlation": correlation},
                    "seed": seed,
                    "representation": "mean",
                    "dataset": dataset_name,
                    "compared_with": list(nums),
                    "pairwise_scores": to_jsonable(scores["pairwise_disentanglement_scores"][i]),
                    "seconds": seconds,
                    "library_versions": versions,
                    "git_commit": commit,
                }
                write_result(run_dir_for(study_dir, num) / "metrics" / "mean" / "udr.json", result)
                store.record_evaluation(num, Evaluation("mean", "udr", seconds, result))
            groups.append(
                UdrGroup(
                    dataset_name,
                    model,
                    parameter,
                    float(runs[0]["value"]),
                    nums,
                    tuple(scores["model_scores"]),
                )
            )
    finally:
        if opened:
            store.close()
    return groups
