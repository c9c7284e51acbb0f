"""The paper's analyses on synthetic results with known answers, and the study report as files and
(with headless Chromium) as rendered in a browser."""

import html
import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from PIL import Image

from untwine.cli import main as cli_main
from untwine.studies import analysis as A
from untwine.studies.definitions import UNSUPERVISED_STUDY_V1
from untwine.studies.grid import Selection, expand
from untwine.studies.records import Evaluation, ModelResult
from untwine.studies.runner import store_entry, write_study_file
from untwine.studies.store import open_store

try:  # the run report's Chromium helpers (tests/test_report.py)
    from test_report import _PROBE, ARTIFACTS, CHROMIUM, _chromium
except ImportError:  # pragma: no cover
    CHROMIUM = None


def _table(rows):
    frame = pd.DataFrame(rows)
    for column in A.INDEX:
        if column not in frame:
            frame[column] = range(len(frame)) if column == "model_num" else 0
    return frame


def test_variance_shares_add_up_and_separate_the_sources():
    # y = model effect (0 / 10) + value effect (0 / 1) + seed noise (+-0.1): shares by construction
    rows = []
    for model, m_effect in (("a", 0.0), ("b", 10.0)):
        for value, v_effect in ((1.0, 0.0), (2.0, 1.0)):
            for seed, noise in ((0, -0.1), (1, 0.1)):
                rows.append(
                    {
                        "dataset": "d",
                        "model": model,
                        "value": value,
                        "seed": seed,
                        "mean/mig/discrete_mig": m_effect + v_effect + noise,
                    }
                )
    table = _table(rows)
    score = A.Score("MIG", "mean", "mig", "discrete_mig")
    shares = A.variance_shares(table, [score]).iloc[0]
    total = 8 * 25 + 8 * 0.25 + 8 * 0.01  # SS: model (+-5), value (+-0.5), seed (+-0.1)
    assert shares["model"] == pytest.approx(200 / total)
    assert shares["hyperparameter"] == pytest.approx(2 / total)
    assert shares["seed"] == pytest.approx(0.08 / total)
    assert shares["model"] + shares["hyperparameter"] + shares["seed"] == pytest.approx(1.0)
    constant = _table([{**r, "mean/mig/discrete_mig": 1.0} for r in rows])
    assert np.isnan(A.variance_shares(constant, [score]).iloc[0]["model"])


def test_rank_correlation_and_downstream():
    x = np.arange(10, dtype=float)
    table = _table(
        {
            "dataset": ["d"] * 10,
            "model": ["a"] * 10,
            "value": x,
            "seed": 0,
            "mean/mig/discrete_mig": x,
            "mean/dci/disentanglement": -(x**3),
            "mean/downstream_task_logistic_regression/100:mean_test_accuracy": x,
            "mean/downstream_task_logistic_regression/10000:mean_test_accuracy": np.full(10, 2.0),
        }
    )
    scores = A.disentanglement_scores(table)
    assert [s.label for s in scores] == ["MIG", "DCI Disentanglement"]
    matrix = A.rank_correlation(table, scores)["d"]
    assert matrix.loc["MIG", "DCI Disentanglement"] == pytest.approx(-1.0)
    downstream = A.downstream_correlation(table, scores)["d"]
    assert list(downstream.columns) == ["LR accuracy @100", "LR accuracy @10,000", "LR sample efficiency"]
    assert downstream.loc["MIG", "LR accuracy @100"] == pytest.approx(1.0)
    assert np.isnan(downstream.loc["MIG", "LR accuracy @10,000"])  # constant target: undefined, not 0
    assert downstream.loc["DCI Disentanglement", "LR sample efficiency"] == pytest.approx(-1.0)


def test_selection_win_rate():
    # within each (model, value): 3 seeds; reconstruction perfectly anti-ordered with MIG -> selection always wins
    rows = []
    for value in (1.0, 2.0):
        for seed in range(3):
            rows.append(
                {
                    "dataset": "d",
                    "model": "a",
                    "value": value,
                    "seed": seed,
                    "train/final_eval/reconstruction": 10.0 - seed,
                    "mean/mig/discrete_mig": seed + value,
                    "mean/dci/disentanglement": -seed,
                }
            )
    table = _table(rows)
    selector = [s for s in A.UNSUPERVISED_SCORES if s.key == "reconstruction"]
    targets = A.disentanglement_scores(table)
    rates = A.selection_win_rate(table, selector, targets).set_index(["pool", "target"])
    assert rates.loc[("seed", "MIG"), "win_rate"] == 1.0 and rates.loc[("seed", "MIG"), "pools"] == 2
    assert rates.loc[("seed", "DCI Disentanglement"), "win_rate"] == 0.0
    # dataset pool: the best reconstruction (8) is a tie between seed 2 of value 1 (MIG 3) and of value 2
    # (MIG 4); MIG 3 beats 3 of the 5 others and ties one (3.5 / 5), MIG 4 beats all 5: (0.7 + 1) / 2
    assert rates.loc[("dataset", "MIG"), "win_rate"] == pytest.approx(0.85)
    assert A._win_rate(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == 0.5


def _fill_store(study_dir, seed=0):
    """A synthetic store for a scaled v1 study: MIG/DCI grow with the value, sampled TC falls, mean TC rises."""
    selection = Selection(datasets=("procedural_dsprites",), values=(0, 2, 5), seeds=(0, 1, 2), steps=1000)
    specs = expand(UNSUPERVISED_STUDY_V1, selection)
    write_study_file(study_dir, UNSUPERVISED_STUDY_V1, selection, store_entry(study_dir, study_dir))
    rng = np.random.default_rng(seed)
    with open_store(study_dir) as store:
        store.register_runs(specs)
        for spec in specs[1:]:
            b = spec.value_index / 5
            evaluations = [
                {
                    "representation": "train",
                    "metric": "final_eval",
                    "result": {
                        "values": {
                            "reconstruction": 100 - 10 * b + rng.normal(),
                            "elbo": -120 + rng.normal(),
                            "kl": 20 * b,
                        }
                    },
                }
            ]
            for rep in ("mean", "sampled"):
                tc = (1 - b if rep == "sampled" else 1 + b) + 0.1 * rng.normal()
                evaluations += [
                    {
                        "representation": rep,
                        "metric": "unsupervised",
                        "result": {
                            "values": {
                                "gaussian_total_correlation": tc,
                                "gaussian_wasserstein_correlation": rng.random(),
                                "mutual_info_score": rng.random(),
                            }
                        },
                    },
                    {
                        "representation": rep,
                        "metric": "mig",
                        "result": {"values": {"discrete_mig": 0.3 * b + 0.05 * rng.normal()}},
                    },
                    {
                        "representation": rep,
                        "metric": "dci",
                        "result": {"values": {"disentanglement": 0.5 * b + 0.1 * rng.normal()}},
                    },
                ]
                for metric in A.DOWNSTREAM_METRICS.values():
                    evaluations.append(
                        {
                            "representation": rep,
                            "metric": metric,
                            "result": {
                                "values": {
                                    "100:mean_test_accuracy": 0.3 + 0.2 * b,
                                    "10000:mean_test_accuracy": 0.8 + 0.05 * rng.normal(),
                                }
                            },
                        }
                    )
            store.record(
                ModelResult(
                    spec.model_num,
                    "",
                    tuple(
                        Evaluation(e["representation"], e["metric"], None, e["result"]) for e in evaluations
                    ),
                    train_seconds=1.0,
                    eval_seconds=2.0,
                )
            )
        store.record(
            ModelResult(
                specs[0].model_num,
                "",
                error="ValueError: synthetic failure",
                traceback="Traceback (synthetic)",
            )
        )
    return specs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    study_dir = tmp_path_factory.mktemp("study")
    _fill_store(study_dir)
    assert cli_main(["study", "report", str(study_dir)]) == 0
    return study_dir / "report" / "index.html"


def test_report_is_self_contained_with_every_section(report):
    text = report.read_text()
    assert "default-src 'none'" in text and "<script" not in text
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", text)
    for title in (
        "Total correlation: sampled vs mean",
        "Rank correlation between metrics",
        "Metric distributions and hyperparameters",
        "Variance explained by model, hyperparameter and seed",
        "Downstream accuracy and sample efficiency",
        "Unsupervised model selection",
    ):
        assert title in text
    assert (
        "untwine&#x27;s statistic, not the paper&#x27;s" in text
        or "untwine's statistic, not the paper's" in text
    )
    assert "synthetic failure" in text  # failed runs are listed
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="[^"]*" data-file="([^"]+)"', text)
    files = {p.name for p in report.parent.glob("*.png")}
    assert set(images) == files and len(files) == 9
    for name in (
        "tc_procedural_dsprites.png",
        "rank_correlation_procedural_dsprites.png",
        "violins_procedural_dsprites.png",
        "variance_shares_procedural_dsprites.png",
        "downstream_procedural_dsprites.png",
        "selection_procedural_dsprites_seed.png",
        "selection_procedural_dsprites_dataset.png",
    ):
        assert name in files
        with Image.open(report.parent / name) as image:
            assert image.size[0] > 200 and image.size[1] > 100
    shares = pd.read_csv(report.parent / "variance_shares.csv")
    assert np.allclose(shares[["model", "hyperparameter", "seed"]].sum(axis=1), 1.0)
    # every figure says what to read from it and links the numbers it shows, as CSV beside it
    figures = re.findall(r'data-file="([^"]+)"[^>]*><figcaption>(.*?)</figcaption></figure>', text, re.S)
    assert len(figures) == len(images)
    for name, caption in figures:
        csv_name = name.replace(".png", ".csv")
        assert "Read" in caption or "read" in caption, caption
        assert f'<a class="numbers" href="{csv_name}">Numbers (CSV)</a>' in caption
        numbers = pd.read_csv(report.parent / csv_name)
        assert len(numbers) > 0 and numbers.select_dtypes("number").notna().any().any(), csv_name
    # the heatmap's CSV is the matrix drawn: the rank correlation of a score with itself is 1
    ranks = pd.read_csv(report.parent / "rank_correlation_procedural_dsprites.csv", index_col=0)
    assert list(ranks.index) == list(ranks.columns) and np.allclose(np.diag(ranks.to_numpy(float)), 1.0)


def test_report_notes_missing_analyses(tmp_path):
    from untwine.report.study_report import render_study_report

    table = _table(
        {
            "dataset": ["d"] * 4,
            "model": ["beta_vae"] * 4,
            "value": [1.0, 1.0, 2.0, 2.0],
            "seed": [0, 1, 0, 1],
            "train/final_eval/elbo": [1.0, 2.0, 3.0, 4.0],
        }
    )
    runs = pd.DataFrame(
        {"model_num": range(4), "status": ["done"] * 4, "train_seconds": 1.0, "eval_seconds": 1.0}
    )
    text = render_study_report(table, runs, tmp_path)
    assert "the study has no <code>unsupervised</code> metric" in text
    assert (
        "Fewer than two disentanglement scores" in text and "No disentanglement scores were computed" in text
    )
    assert "Model selection needs unsupervised scores and disentanglement scores" in text
    empty = render_study_report(pd.DataFrame(columns=A.INDEX), runs.iloc[:0], tmp_path / "empty")
    assert "No finished runs in the store yet" in empty


@pytest.mark.skipif(
    CHROMIUM is None or not CHROMIUM.exists(),
    reason="headless Chromium not installed at /usr/bin/chromium (scripts/install_test_packages.sh)",
)
def test_report_renders_in_headless_chromium(report, tmp_path):
    text = report.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
    result = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    start = result.stdout.index('<pre id="untwine-probe">') + len('<pre id="untwine-probe">')
    probe = json.loads(html.unescape(result.stdout[start : result.stdout.index("</pre>", start)]))
    assert probe["images"] == len(list(report.parent.glob("*.png")))
    assert probe["broken"] == [] and all(width > 0 for width in probe["widths"]) and probe["errors"] == []
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Refused" in line], console
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "study_report_screenshot.png"
    result = _chromium(
        tmp_path,
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1200,2400",
        report.as_uri(),
    )
    assert result.returncode == 0 and screenshot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape == (2400, 1200, 3) and pixels.std() > 20


def _random_table(seed=0):
    """Two datasets, 3 models x 3 values x 1-4 seeds, with ties, missing numbers and a constant score."""
    rng = np.random.default_rng(seed)
    rows = [
        {"dataset": dataset, "model": model, "value": value, "seed": seed}
        for dataset in ("d1", "d2")
        for model in ("a", "b", "c")
        for value in (1.0, 2.0, 3.0)
        for seed in range(int(rng.integers(1, 5)))
    ]
    table = _table(rows)
    n = len(table)
    table["mean/mig/discrete_mig"] = np.round(rng.normal(size=n), 1)  # ties
    dci = rng.normal(size=n)
    dci[rng.random(n) < 0.3] = np.nan
    table["mean/dci/disentanglement"] = dci
    table["mean/sap_score/SAP_score"] = np.where(table["dataset"] == "d2", 0.5, rng.normal(size=n))
    table["train/final_eval/reconstruction"] = np.round(rng.normal(size=n))
    for metric in A.DOWNSTREAM_METRICS.values():
        table[f"mean/{metric}/100:mean_test_accuracy"] = np.round(rng.random(n), 1)
        table[f"mean/{metric}/10000:mean_test_accuracy"] = rng.random(n) + 0.5
    return table


def _scipy_spearman(x, y):
    mask = np.isfinite(x) & np.isfinite(y)
    if mask.sum() < 3 or np.ptp(x[mask]) == 0 or np.ptp(y[mask]) == 0:
        return np.nan
    return scipy.stats.spearmanr(x[mask], y[mask]).statistic


def test_correlations_match_scipy_spearmanr_on_the_runs_both_scores_have():
    table = _random_table()
    scores = A.disentanglement_scores(table)
    assert [s.label for s in scores] == ["MIG", "DCI Disentanglement", "SAP"]
    matrices, downstream = A.rank_correlation(table, scores), A.downstream_correlation(table, scores)
    for dataset, group in table.groupby("dataset"):
        targets = A.downstream_targets(group)
        for a in scores:
            x = group[a.column].to_numpy(float)
            for b in scores:
                expected = 1.0 if a is b else _scipy_spearman(x, group[b.column].to_numpy(float))
                np.testing.assert_allclose(matrices[dataset].loc[a.label, b.label], expected, rtol=1e-12)
            for label, target in targets.items():
                expected = _scipy_spearman(x, target.to_numpy(float))
                np.testing.assert_allclose(downstream[dataset].loc[a.label, label], expected, rtol=1e-12)
    assert np.isnan(matrices["d2"].loc["MIG", "SAP"]) and matrices["d2"].loc["SAP", "SAP"] == 1.0
    assert not np.isnan(matrices["d1"].loc["MIG", "SAP"])


def test_variance_shares_match_a_direct_nested_sum_of_squares():
    table = _random_table(1)
    scores = A.disentanglement_scores(table)
    shares = A.variance_shares(table, scores).set_index(["dataset", "score"])
    assert len(shares) == 2 * len(scores)
    for (dataset, label), row in shares.iterrows():
        score = next(s for s in scores if s.label == label)
        part = table[(table["dataset"] == dataset) & table[score.column].notna()]
        y = part[score.column].to_numpy(float)
        assert row["runs"] == len(y)
        if np.ptp(y) == 0:
            assert np.isnan(row[["model", "hyperparameter", "seed"]].astype(float)).all()
            continue
        model_mean = np.array([y[part["model"].to_numpy() == m].mean() for m in part["model"]])
        cell = list(zip(part["model"], part["value"], strict=True))
        cell_mean = np.array([y[[c == k for c in cell]].mean() for k in cell])
        total = ((y - y.mean()) ** 2).sum()
        expected = {
            "model": ((model_mean - y.mean()) ** 2).sum() / total,
            "hyperparameter": ((cell_mean - model_mean) ** 2).sum() / total,
            "seed": ((y - cell_mean) ** 2).sum() / total,
        }
        for column, value in expected.items():
            assert row[column] == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_win_rates_match_the_definition_counted_pair_by_pair():
    table = _random_table(2)
    selector = next(s for s in A.UNSUPERVISED_SCORES if s.key == "reconstruction")  # lower is better
    targets = [s for s in A.disentanglement_scores(table) if s.label == "MIG"]
    rates = A.selection_win_rate(table, [selector], targets).set_index(["dataset", "pool"])

    def by_definition(part):
        s, t = -part[selector.column].to_numpy(float), part[targets[0].column].to_numpy(float)
        wins = [
            np.mean([1.0 if t[j] < t[i] else 0.5 if t[j] == t[i] else 0.0 for j in range(len(t)) if j != i])
            for i in np.flatnonzero(s == s.max())
        ]
        return np.mean(wins)

    for dataset, group in table.groupby("dataset"):
        pools = [g for _, g in group.groupby(["model", "value"]) if len(g) >= 2]
        seed = rates.loc[(dataset, "seed")]
        assert seed["pools"] == len(pools) > 0
        assert seed["win_rate"] == pytest.approx(np.mean([by_definition(g) for g in pools]), rel=1e-12)
        assert rates.loc[(dataset, "dataset"), "win_rate"] == pytest.approx(by_definition(group), rel=1e-12)


def test_fairness_section_correlates_unfairness_with_the_scores(tmp_path):
    """fairness_study_v1's analysis on a synthetic store: unfairness falls as the value (and MIG, DCI) rises."""
    study_dir = tmp_path / "study"
    specs = _fill_store(study_dir)
    rng = np.random.default_rng(5)
    with open_store(study_dir) as store:
        for spec in specs[1:]:  # the first run failed
            unfairness = 0.5 - 0.08 * spec.value_index + 0.02 * rng.normal()
            store.record_evaluation(
                spec.model_num,
                Evaluation(
                    "mean", "fairness", None, {"values": {"mean_fairness:mean_pred:mean_sens": unfairness}}
                ),
            )
        table = A.load_table(store)
    assert cli_main(["study", "report", str(study_dir)]) == 0
    text = (study_dir / "report" / "index.html").read_text()
    assert "7. Fairness of downstream predictions" in text and 'data-file="fairness.png"' in text
    saved = pd.read_csv(study_dir / "report" / "fairness_correlation.csv", index_col="dataset")
    unfair = table[A.UNFAIRNESS.column].astype(float)
    for label, column in (
        ("MIG", "mean/mig/discrete_mig"),
        ("DCI Disentanglement", "mean/dci/disentanglement"),
    ):
        expected = scipy.stats.spearmanr(unfair, table[column].astype(float)).statistic
        assert saved.loc["procedural_dsprites", label] == pytest.approx(expected)
        assert expected < -0.5  # built in: fairer with more disentanglement
    lr = table["mean/downstream_task_logistic_regression/100:mean_test_accuracy"].astype(float)
    assert saved.loc["procedural_dsprites", "LR accuracy @100"] == pytest.approx(
        scipy.stats.spearmanr(unfair, lr).statistic
    )


def test_fairness_study_v1_is_v1s_grid_with_fairness():
    from untwine.studies.definitions import FAIRNESS_STUDY_V1, get_study
    from untwine.studies.grid import model_num

    assert get_study("fairness_study_v1") is FAIRNESS_STUDY_V1
    assert FAIRNESS_STUDY_V1.metrics == (*UNSUPERVISED_STUDY_V1.metrics, "fairness")
    assert FAIRNESS_STUDY_V1.size == 12600 and FAIRNESS_STUDY_V1.train == UNSUPERVISED_STUDY_V1.train
    # dlib's numbering: h.product(datasets, models (6 x 6 values), 50 seeds).
    assert model_num(FAIRNESS_STUDY_V1, "cars3d", "dip_vae_ii", 3, 7) == 5 * 1800 + 3 * 300 + 3 * 50 + 7


def test_repeat_summary_and_ranking_stability_by_hand():
    rows = []
    # Three models; seeds 0 and 1 rank them alike at n=100 (values shift by the seed), reversed at n=10.
    for model, base in ((0, 0.1), (1, 0.2), (2, 0.3)):
        for seed in (0, 1):
            rows.append((model, seed, 100, base + 0.01 * seed))
            rows.append((model, seed, 10, base if seed == 0 else 0.4 - base))
    repeats = pd.DataFrame(
        [
            {
                "model_num": m,
                "representation": "mean",
                "metric": "mig",
                "eval_seed": s,
                "num_train": n,
                "key": "discrete_mig",
                "value": v,
                "dataset": "d",
            }
            for m, s, n, v in rows
        ]
    )
    scores = A.repeat_scores(repeats)
    assert set(scores["score"]) == {"MIG"}
    stability = A.ranking_stability(scores).set_index("num_train")
    assert stability.loc[100, "spearman_between_seeds"] == pytest.approx(1.0)
    assert stability.loc[10, "spearman_between_seeds"] == pytest.approx(-1.0)
    summary = A.repeat_summary(scores).set_index("num_train")
    assert summary.loc[100, "seed_std"] == pytest.approx(0.01 / np.sqrt(2))  # two values 0.01 apart, ddof 1
    assert summary.loc[100, "mean"] == pytest.approx(0.205)
    assert summary.loc[10, "seed_std"] == pytest.approx(np.mean([0.2, 0.0, 0.2]) / np.sqrt(2))


def test_few_label_validation_scores_are_correlated_with_the_test_scores(tmp_path):
    from untwine.report.study_report import render_study_report

    rng = np.random.default_rng(3)
    table = _table(
        [
            {"dataset": d, "model": "s2_beta_vae", "value": 1.0, "seed": s}
            for d in ("a", "b")
            for s in range(8)
        ]
    )
    test_mig = rng.random(16)
    table["mean/mig/discrete_mig"] = test_mig
    table["validation/mig/discrete_mig"] = np.where(table["dataset"] == "a", test_mig * 2 + 1, -test_mig)
    table["mean/dci/disentanglement"] = rng.random(16)
    table["validation/dci/disentanglement"] = rng.random(16)
    matrix = A.validation_correlation(table)
    assert list(matrix.index) == ["a", "b"] and list(matrix.columns) == ["MIG", "DCI Disentanglement"]
    assert matrix.loc["a", "MIG"] == pytest.approx(1.0) and matrix.loc["b", "MIG"] == pytest.approx(-1.0)
    for dataset in ("a", "b"):
        rows = table["dataset"] == dataset
        expected = _scipy_spearman(
            table.loc[rows, "validation/dci/disentanglement"].to_numpy(),
            table.loc[rows, "mean/dci/disentanglement"].to_numpy(),
        )
        assert matrix.loc[dataset, "DCI Disentanglement"] == pytest.approx(expected)
    assert (
        A.validation_correlation(
            table.drop(columns=["validation/mig/discrete_mig", "validation/dci/disentanglement"])
        )
        is None
    )
    runs = pd.DataFrame(
        {"model_num": range(16), "status": ["done"] * 16, "train_seconds": 1.0, "eval_seconds": 1.0}
    )
    text = render_study_report(table, runs, tmp_path)
    assert "9. Few-label model selection: validation vs test" in text
    shown = pd.read_csv(tmp_path / "validation_vs_test.csv", index_col=0)
    assert np.allclose(shown.to_numpy(float), matrix.to_numpy(float))
