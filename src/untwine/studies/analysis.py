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
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import rankdata

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
    # Duan et al.'s unsupervised model selection, present once `untwine study udr` has run.
    Score("UDR", "mean", "udr", "model_score"),
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


def _long_scores(table: pd.DataFrame, scores: Sequence[Score], keys: Sequence[str]) -> pd.DataFrame:
    """One row per score and run (score by score): the run's ``keys``, ``score`` (the label) and ``number``
    (NaN where missing or not a number)."""
    if not scores:
        return pd.DataFrame(columns=[*keys, "score", "number"])
    long = table.melt(
        id_vars=list(keys), value_vars=[s.column for s in scores], var_name="score", value_name="number"
    )
    long["score"] = long["score"].map({s.column: s.label for s in scores})
    long["number"] = pd.to_numeric(long["number"], errors="coerce")
    return long


def _spearman_matrix(columns: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of every pair of columns over the runs where both are finite (average ranks
    for ties); NaN for fewer than 3 such runs or a constant column."""
    return columns.replace([np.inf, -np.inf], np.nan).corr(method="spearman", min_periods=3)


# -- 1. total correlation of sampled vs mean representations --------------------------------------------
def tc_by_regularisation(table: pd.DataFrame) -> pd.DataFrame:
    """Long table: dataset, model, parameter, value, seed, representation (sampled | mean), tc."""
    keys = ["dataset", "model", "parameter", "value", "seed"]
    tc = [Score(rep, rep, *TC_KEY) for rep in ("sampled", "mean")]
    tc = [score for score in tc if score.column in table.columns]
    return _long_scores(table, tc, keys).rename(columns={"score": "representation", "number": "tc"})


# -- 2. rank correlation between metrics -------------------------------------------------------------
def rank_correlation(table: pd.DataFrame, scores: Sequence[Score]) -> dict[str, pd.DataFrame]:
    """Per dataset: the Spearman correlation matrix (labels x labels) over that dataset's runs."""
    labels = [s.label for s in scores]
    out = {}
    for dataset, group in table.groupby("dataset", sort=False):
        matrix = _spearman_matrix(_numeric(group, [s.column for s in scores])).to_numpy(copy=True)
        np.fill_diagonal(matrix, 1.0)  # a score with itself, even when it does not vary
        out[dataset] = pd.DataFrame(matrix, index=labels, columns=labels)
    return out


# -- 3. distributions --------------------------------------------------------------------------------
def score_points(table: pd.DataFrame, scores: Sequence[Score]) -> pd.DataFrame:
    """Long table: dataset, model, parameter, value, value_index, seed, score (label), number."""
    frame = _long_scores(table, scores, ["dataset", "model", "parameter", "value", "value_index", "seed"])
    return frame[np.isfinite(frame["number"].astype(float))]


# -- 4. variance shares (untwine's statistic) ----------------------------------------------------------
def variance_shares(table: pd.DataFrame, scores: Sequence[Score]) -> pd.DataFrame:
    """Per dataset and score: shares of the total sum of squares due to the model, the hyperparameter
    (within the model) and the seed (within model and hyperparameter); they add up to 1.

    Columns: dataset, score, model, hyperparameter, seed, runs.  NaN when the score does not vary.
    """
    columns = ["dataset", "score", "model", "hyperparameter", "seed", "runs"]
    cells = ["dataset", "score"]
    long = _long_scores(table, scores, ["dataset", "model", "value"]).dropna()
    y = long["number"]
    grand = long.groupby(cells)["number"].transform("mean")
    model_mean = long.groupby([*cells, "model"])["number"].transform("mean")
    cell_mean = long.groupby([*cells, "model", "value"])["number"].transform("mean")
    squares = long[cells].assign(
        total=(y - grand) ** 2,
        model=(model_mean - grand) ** 2,
        hyperparameter=(cell_mean - model_mean) ** 2,
        seed=(y - cell_mean) ** 2,
        scale=y**2,
        runs=1,
    )
    every = pd.MultiIndex.from_product(
        [table["dataset"].dropna().unique(), [s.label for s in scores]], names=cells
    )  # a score without numbers for a dataset still gets its row
    if every.empty:
        return pd.DataFrame(columns=columns)
    sums = squares.groupby(cells, sort=False).sum().reindex(every)
    runs = sums["runs"].fillna(0).astype(int)
    varies = (runs >= 2) & (sums["total"] > 1e-12 * np.maximum(1.0, sums["scale"]))
    shares = sums[["model", "hyperparameter", "seed"]].div(sums["total"], axis=0).where(varies, np.nan)
    return shares.assign(runs=runs).reset_index().reindex(columns=columns)


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
        columns = pd.concat([_numeric(group, [s.column for s in scores]), pd.DataFrame(targets)], axis=1)
        matrix = _spearman_matrix(columns).iloc[: len(scores), len(scores) :]
        out[dataset] = pd.DataFrame(matrix.to_numpy(), index=[s.label for s in scores], columns=list(targets))
    return out


# -- 7. fairness (Locatello et al. 2019, "On the Fairness of Disentangled Representations") ------------
# The paper's unfairness score: the fairness metric's mean over predicted and sensitive factors of the
# total variation between the prediction's distributions under interventions on the sensitive factor.
UNFAIRNESS = Score(
    "Unfairness", "mean", "fairness", "mean_fairness:mean_pred:mean_sens", higher_is_better=False
)


def fairness_correlation(table: pd.DataFrame, scores: Sequence[Score]) -> pd.DataFrame | None:
    """Per dataset (rows): Spearman correlation of unfairness with each disentanglement score and each
    downstream accuracy (columns) over that dataset's runs; None when no run has a fairness result."""
    if (
        UNFAIRNESS.column not in table
        or pd.to_numeric(table[UNFAIRNESS.column], errors="coerce").isna().all()
    ):
        return None
    rows = {}
    for dataset, group in table.groupby("dataset", sort=False):
        targets = {s.label: pd.to_numeric(group[s.column], errors="coerce") for s in scores}
        targets.update(downstream_targets(group))
        columns = pd.concat(
            [
                pd.to_numeric(group[UNFAIRNESS.column], errors="coerce").rename(UNFAIRNESS.label),
                pd.DataFrame(targets),
            ],
            axis=1,
        )
        rows[dataset] = _spearman_matrix(columns).iloc[0, 1:]
    return pd.DataFrame(rows).T


# -- 9. few-label model selection (Locatello et al. 2020) -----------------------------------------------
# The scores a few-label run computes on its labelled validation split (untwine.training.validation),
# each paired with the same score on the study's fresh test sample (mean representation).
VALIDATION_PAIRS = tuple(
    (replace(score, label=f"{score.label} (validation)", representation="validation"), score)
    for score in DISENTANGLEMENT_SCORES
    if score.metric in ("mig", "sap_score", "dci")
)


def validation_correlation(table: pd.DataFrame) -> pd.DataFrame | None:
    """Per dataset (rows): Spearman correlation, across the runs, between each score on the labelled
    validation split and the same score on the test sample (columns, by score); None when no run has
    validation scores.  High values: a few labels rank the models as the full ground truth does."""
    pairs = [(v, t) for v, t in VALIDATION_PAIRS if v.column in table and t.column in table]
    if not pairs or all(pd.to_numeric(table[v.column], errors="coerce").isna().all() for v, _ in pairs):
        return None
    rows = {}
    for dataset, group in table.groupby("dataset", sort=False):
        rows[dataset] = {
            test.label: _spearman_matrix(
                pd.DataFrame(
                    {
                        "validation": pd.to_numeric(group[validation.column], errors="coerce"),
                        "test": pd.to_numeric(group[test.column], errors="coerce"),
                    }
                )
            ).iloc[0, 1]
            for validation, test in pairs
        }
    return pd.DataFrame(rows).T


# -- 8. repeated evaluation (the JMLR extension) --------------------------------------------------------
def repeat_scores(repeats: pd.DataFrame) -> pd.DataFrame:
    """The repeats of the paper's disentanglement scores (mean representation), labelled: columns dataset,
    model_num, score, eval_seed, num_train, number."""
    columns = ["dataset", "model_num", "score", "eval_seed", "num_train", "number"]
    if repeats.empty:
        return pd.DataFrame(columns=columns)
    parts = []
    for score in DISENTANGLEMENT_SCORES:
        mask = (
            (repeats["representation"] == score.representation)
            & (repeats["metric"] == score.metric)
            & (repeats["key"] == score.key)
        )
        if mask.any():
            part = repeats[mask].assign(score=score.label, number=pd.to_numeric(repeats[mask]["value"]))
            parts.append(part[columns])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def repeat_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, score and sample size: the mean score over models and seeds, the spread across
    evaluation seeds (each model's standard deviation over seeds, ddof 1, averaged over models), the
    models and the seeds."""
    rows = []
    for (dataset, score, n), group in scores.groupby(["dataset", "score", "num_train"], sort=True):
        per_model = group.groupby("model_num")["number"]
        rows.append(
            {
                "dataset": dataset,
                "score": score,
                "num_train": int(n),
                "mean": float(group["number"].mean()),
                "seed_std": float(per_model.std(ddof=1).mean()),
                "models": int(per_model.ngroups),
                "seeds": int(group["eval_seed"].nunique()),
            }
        )
    return pd.DataFrame(
        rows, columns=["dataset", "score", "num_train", "mean", "seed_std", "models", "seeds"]
    )


def ranking_stability(scores: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, score and sample size: the mean Spearman correlation between the models' scores
    under each pair of evaluation seeds (1: every seed ranks the models alike), and the pairs averaged."""
    rows = []
    for (dataset, score, n), group in scores.groupby(["dataset", "score", "num_train"], sort=True):
        wide = group.pivot_table(index="model_num", columns="eval_seed", values="number")
        matrix = _spearman_matrix(wide).to_numpy()
        pairs = matrix[np.triu_indices(matrix.shape[0], k=1)] if matrix.shape[0] > 1 else np.array([])
        pairs = pairs[np.isfinite(pairs)]
        rows.append(
            {
                "dataset": dataset,
                "score": score,
                "num_train": int(n),
                "spearman_between_seeds": float(pairs.mean()) if pairs.size else float("nan"),
                "seed_pairs": int(pairs.size),
            }
        )
    return pd.DataFrame(
        rows, columns=["dataset", "score", "num_train", "spearman_between_seeds", "seed_pairs"]
    )


# -- 6. unsupervised model selection ------------------------------------------------------------------
def _win_rate(selector: np.ndarray, target: np.ndarray) -> float:
    """P(target of the run with the best selector > target of a different run drawn at random); ties 1/2.
    Ties in the selector are averaged over the tied runs."""
    # A run's average rank less one counts the other runs it beats, plus 1/2 for each it ties.
    beaten = rankdata(target)[selector == selector.max()] - 1
    return float(np.mean(beaten / (len(target) - 1)))


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
