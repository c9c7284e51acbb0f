"""The analyses of Locatello et al. (2019) on whatever part of a study was run, as pandas tables.

Every function takes the *wide* results table -- one row per run (``model_num, dataset, model,
parameter, value, value_index, seed``) and one column per ``representation/metric/key`` -- as returned
by ``ResultStore.results_frame(wide=True)`` or :func:`load_table`.  Nothing here draws; the report
(:mod:`untwine.report.study_report`) turns these tables into figures.

1. :func:`tc_by_regularisation` -- total correlation of the sampled and of the mean representation
   against the regularisation strength, per model (the paper's Figure 1 question: does the
   regulariser make the *sampled* representation factorise, and the mean one too?).
2. :func:`rank_correlation` -- Spearman rank correlation between the disentanglement scores, per dataset.
3. :func:`score_points` -- scores per model and per hyperparameter value, seeds as points (violins,
   score-vs-hyperparameter plots).
4. :func:`variance_shares` -- how much of a score's variance the model, the hyperparameter and the seed
   account for.  **This is untwine's statistic, not the paper's**: a nested sum-of-squares
   decomposition (model; hyperparameter within model; seed within model and hyperparameter), whose
   three shares add up to 1.
5. :func:`downstream_correlation` -- Spearman correlation of each score with downstream accuracy (logistic
   regression and boosted trees, 100 and 10,000 training samples -- or the nearest sizes computed) and
   with sample efficiency (accuracy at 100 / accuracy at 10,000).
6. :func:`selection_win_rate` -- unsupervised model selection: the probability that the run chosen by an
   unsupervised score (reconstruction, ELBO, total correlation, ...) beats a run chosen at random,
   (a) among the seeds of one model and hyperparameter ("seed" pools) and (b) among all runs of a
   dataset ("dataset" pools).  0.5 means the score is no better than a random choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

INDEX = ["model_num", "dataset", "model", "parameter", "value", "value_index", "seed"]


@dataclass(frozen=True)
class Score:
    """One number per run: ``representation/metric/key`` of the results, with a display name."""

    label: str
    representation: str
    metric: str
    key: str
    higher_is_better: bool = True

    @property
    def column(self) -> str:
        return f"{self.representation}/{self.metric}/{self.key}"


# The six disentanglement scores of the paper, on the mean representation (metric and key names of
# untwine.metrics, which follow disentanglement_lib's).
DISENTANGLEMENT_SCORES = (
    Score("BetaVAE score", "mean", "beta_vae_sklearn", "eval_accuracy"),
    Score("FactorVAE score", "mean", "factor_vae_metric", "eval_accuracy"),
    Score("MIG", "mean", "mig", "discrete_mig"),
    Score("DCI Disentanglement", "mean", "dci", "disentanglement"),
    Score("Modularity", "mean", "modularity_explicitness", "modularity_score"),
    Score("SAP", "mean", "sap_score", "SAP_score"),
)

# Scores that need no labels: held-out loss terms of training and the unsupervised metrics.
UNSUPERVISED_SCORES = (
    Score("Reconstruction (lower)", "train", "final_eval", "reconstruction", higher_is_better=False),
    Score("ELBO", "train", "final_eval", "elbo"),
    Score("KL (lower)", "train", "final_eval", "kl", higher_is_better=False),
    Score(
        "TC sampled (lower)", "sampled", "unsupervised", "gaussian_total_correlation", higher_is_better=False
    ),
    Score("TC mean (lower)", "mean", "unsupervised", "gaussian_total_correlation", higher_is_better=False),
    Score(
        "Wasserstein corr. sampled (lower)",
        "sampled",
        "unsupervised",
        "gaussian_wasserstein_correlation",
        higher_is_better=False,
    ),
    Score("Mutual info. mean (lower)", "mean", "unsupervised", "mutual_info_score", higher_is_better=False),
)

TC_KEY = ("unsupervised", "gaussian_total_correlation")

DOWNSTREAM_METRICS = {"LR": "downstream_task_logistic_regression", "GBT": "downstream_task_boosted_trees"}
DOWNSTREAM_SIZES = (100, 10_000)


def _accuracy_column(metric: str, size: int, representation: str = "mean") -> str:
    return f"{representation}/{metric}/{size}:mean_test_accuracy"


# -- loading ------------------------------------------------------------------------------------------
def load_table(store) -> pd.DataFrame:
    """The wide table of a store (only finished runs contribute results)."""
    return store.results_frame(wide=True)


def available(table: pd.DataFrame, scores: Iterable[Score]) -> list[Score]:
    """The scores with at least one finite value in ``table``."""
    out = []
    for score in scores:
        if (
            score.column in table.columns
            and np.isfinite(pd.to_numeric(table[score.column], errors="coerce")).any()
        ):
            out.append(score)
    return out


def disentanglement_scores(table: pd.DataFrame, extra_metrics: Sequence[str] = ()) -> list[Score]:
    """The paper's scores present in ``table``; if none is, every top-level key of the mean
    representation's metrics other than the unsupervised/downstream ones (a study with other metrics)."""
    found = available(table, DISENTANGLEMENT_SCORES)
    if found and not extra_metrics:
        return found
    skip = {"unsupervised", *DOWNSTREAM_METRICS.values()}
    known = {s.column for s in found}
    for column in table.columns:
        parts = column.split("/")
        if len(parts) == 3 and parts[0] == "mean" and parts[1] not in skip and column not in known:
            if not found or parts[1] in extra_metrics:
                found.append(Score(f"{parts[1]}: {parts[2]}", "mean", parts[1], parts[2]))
    return available(table, found)


def _numeric(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    return frame[list(columns)].apply(pd.to_numeric, errors="coerce")


def _spearman(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    mask = np.isfinite(a.to_numpy(float)) & np.isfinite(b.to_numpy(float))
    n = int(mask.sum())
    if n < 3:
        return float("nan"), n
    x, y = a[mask].rank().to_numpy(), b[mask].rank().to_numpy()
    if x.std() == 0 or y.std() == 0:
        return float("nan"), n
    return float(np.corrcoef(x, y)[0, 1]), n


# -- 1. total correlation of sampled vs mean representations --------------------------------------------
def tc_by_regularisation(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: dataset, model, parameter, value, seed, representation (sampled | mean), tc."""
    rows = []
    for rep in ("sampled", "mean"):
        column = f"{rep}/{TC_KEY[0]}/{TC_KEY[1]}"
        if column not in table.columns:
            continue
        part = table[["dataset", "model", "parameter", "value", "seed"]].copy()
        part["representation"] = rep
        part["tc"] = pd.to_numeric(table[column], errors="coerce")
        rows.append(part)
    if not rows:
        return pd.DataFrame(
            columns=["dataset", "model", "parameter", "value", "seed", "representation", "tc"]
        )
    return pd.concat(rows, ignore_index=True)


# -- 2. rank correlation between metrics -------------------------------------------------------------
def rank_correlation(table: pd.DataFrame, scores: Sequence[Score]) -> dict[str, pd.DataFrame]:
    """Per dataset: the Spearman correlation matrix (labels x labels) over that dataset's runs."""
    out = {}
    for dataset, group in table.groupby("dataset", sort=False):
        values = _numeric(group, [s.column for s in scores])
        matrix = pd.DataFrame(np.nan, index=[s.label for s in scores], columns=[s.label for s in scores])
        for i, a in enumerate(scores):
            for j, b in enumerate(scores):
                matrix.iloc[i, j] = 1.0 if i == j else _spearman(values[a.column], values[b.column])[0]
        out[dataset] = matrix
    return out


# -- 3. distributions --------------------------------------------------------------------------------
def score_points(table: pd.DataFrame, scores: Sequence[Score]) -> pd.DataFrame:
    """Long table: dataset, model, parameter, value, value_index, seed, score (label), number."""
    rows = []
    for score in scores:
        part = table[["dataset", "model", "parameter", "value", "value_index", "seed"]].copy()
        part["score"] = score.label
        part["number"] = pd.to_numeric(table[score.column], errors="coerce")
        rows.append(part)
    if not rows:
        return pd.DataFrame(
            columns=["dataset", "model", "parameter", "value", "value_index", "seed", "score", "number"]
        )
    frame = pd.concat(rows, ignore_index=True)
    return frame[np.isfinite(frame["number"])]


# -- 4. variance shares (untwine's statistic) ----------------------------------------------------------
def variance_shares(table: pd.DataFrame, scores: Sequence[Score]) -> pd.DataFrame:
    """Per dataset and score: shares of the total sum of squares due to the model, the hyperparameter
    (within the model) and the seed (within model and hyperparameter); they add up to 1.

    Columns: dataset, score, model, hyperparameter, seed, runs.  NaN when the score does not vary.
    """
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
        for score in scores:
            data = pd.DataFrame(
                {
                    "model": group["model"],
                    "value": group["value"],
                    "y": pd.to_numeric(group[score.column], errors="coerce"),
                }
            ).dropna()
            n = len(data)
            total = float(((data["y"] - data["y"].mean()) ** 2).sum()) if n else 0.0
            row = {"dataset": dataset, "score": score.label, "runs": n}
            if n < 2 or total <= 1e-12 * max(1.0, float((data["y"] ** 2).sum())):
                rows.append({**row, "model": np.nan, "hyperparameter": np.nan, "seed": np.nan})
                continue
            grand = data["y"].mean()
            model_mean = data.groupby("model")["y"].transform("mean")
            cell_mean = data.groupby(["model", "value"])["y"].transform("mean")
            ss_model = float(((model_mean - grand) ** 2).sum())
            ss_value = float(((cell_mean - model_mean) ** 2).sum())
            ss_seed = float(((data["y"] - cell_mean) ** 2).sum())
            rows.append(
                {
                    **row,
                    "model": ss_model / total,
                    "hyperparameter": ss_value / total,
                    "seed": ss_seed / total,
                }
            )
    return pd.DataFrame(rows, columns=["dataset", "score", "model", "hyperparameter", "seed", "runs"])


# -- 5. downstream tasks ----------------------------------------------------------------------------
def downstream_sizes(table: pd.DataFrame, metric: str) -> tuple[int, int] | None:
    """(small, large) training sizes of a downstream metric in ``table``: 100 and 10,000 as in the paper,
    or the nearest sizes computed (a study run with smaller samples)."""
    prefix = f"mean/{metric}/"
    sizes = sorted(
        int(c[len(prefix) :].split(":")[0])
        for c in table.columns
        if c.startswith(prefix) and c.endswith(":mean_test_accuracy")
    )
    if not sizes:
        return None
    small = (
        DOWNSTREAM_SIZES[0]
        if DOWNSTREAM_SIZES[0] in sizes
        else min(sizes, key=lambda n: abs(n - DOWNSTREAM_SIZES[0]))
    )
    return small, max(sizes)


def downstream_targets(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Downstream accuracies (at the small and large training size) and sample efficiency (their ratio)
    present in ``table``, by label."""
    targets = {}
    for short, metric in DOWNSTREAM_METRICS.items():
        sizes = downstream_sizes(table, metric)
        if sizes is None:
            continue
        columns = {size: _accuracy_column(metric, size) for size in sizes}
        for size, column in columns.items():
            targets[f"{short} accuracy @{size:,}"] = pd.to_numeric(table[column], errors="coerce")
        if sizes[0] != sizes[1]:
            low, high = (pd.to_numeric(table[columns[s]], errors="coerce") for s in sizes)
            targets[f"{short} sample efficiency"] = low / high.where(high > 0)
    return targets


def downstream_correlation(table: pd.DataFrame, scores: Sequence[Score]) -> dict[str, pd.DataFrame]:
    """Per dataset: Spearman correlation (scores x downstream targets)."""
    out = {}
    for dataset, group in table.groupby("dataset", sort=False):
        targets = downstream_targets(group)
        if not targets:
            continue
        matrix = pd.DataFrame(np.nan, index=[s.label for s in scores], columns=list(targets))
        for score in scores:
            values = pd.to_numeric(group[score.column], errors="coerce")
            for label, target in targets.items():
                matrix.loc[score.label, label] = _spearman(values, target)[0]
        out[dataset] = matrix
    return out


# -- 6. unsupervised model selection ------------------------------------------------------------------
def _win_rate(selector: np.ndarray, target: np.ndarray) -> float:
    """P(target of the run with the best selector > target of a different run drawn at random); ties 1/2.
    Ties in the selector are averaged over the tied runs."""
    best = np.flatnonzero(selector == selector.max())
    rates = []
    for i in best:
        others = np.delete(target, i)
        rates.append(((others < target[i]).sum() + 0.5 * (others == target[i]).sum()) / len(others))
    return float(np.mean(rates))


def selection_win_rate(
    table: pd.DataFrame, selectors: Sequence[Score], targets: Sequence[Score]
) -> pd.DataFrame:
    """Columns: dataset, pool (seed | dataset), selector, target, win_rate, pools (how many were averaged)."""
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
        for selector in selectors:
            sel = pd.to_numeric(group[selector.column], errors="coerce")
            sel = sel if selector.higher_is_better else -sel
            for target in targets:
                tgt = pd.to_numeric(group[target.column], errors="coerce")
                tgt = tgt if target.higher_is_better else -tgt
                data = pd.DataFrame(
                    {"model": group["model"], "value": group["value"], "s": sel, "t": tgt}
                ).dropna()
                data = data[np.isfinite(data["s"]) & np.isfinite(data["t"])]
                for pool, groups in (("seed", data.groupby(["model", "value"])), ("dataset", [(None, data)])):
                    rates = [
                        _win_rate(g["s"].to_numpy(), g["t"].to_numpy()) for _, g in groups if len(g) >= 2
                    ]
                    rows.append(
                        {
                            "dataset": dataset,
                            "pool": pool,
                            "selector": selector.label,
                            "target": target.label,
                            "win_rate": float(np.mean(rates)) if rates else np.nan,
                            "pools": len(rates),
                        }
                    )
    return pd.DataFrame(rows, columns=["dataset", "pool", "selector", "target", "win_rate", "pools"])


def summary_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Runs with results per dataset and model."""
    if table.empty:
        return pd.DataFrame(columns=["dataset", "model", "runs", "values", "seeds"])
    grouped = table.groupby(["dataset", "model"], sort=False)
    return pd.DataFrame(
        {"runs": grouped.size(), "values": grouped["value"].nunique(), "seeds": grouped["seed"].nunique()}
    ).reset_index()
