"""The metric table: one spec per metric, names/aliases/presets and parameter values resolved in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import untwine.metrics
from untwine.metrics import METRICS, PRESETS, MetricSpec, resolve_metrics, resolve_parameters
from untwine.metrics.registry import ALIASES, SPECS, expected_requests


def test_each_spec_owns_its_defaults_docs_and_place_in_the_run_order():
    assert [spec.name for spec in SPECS] == list(METRICS)
    assert all(isinstance(spec, MetricSpec) for spec in SPECS)
    for spec in SPECS:
        assert spec.description and spec.parameters
        assert all(
            parameter.doc and parameter.allowed.test(parameter.default)
            for parameter in spec.parameters.values()
        )
    # Cheap metrics first: they run in the main process while the workers fit the classifiers.
    assert [spec.name for spec in sorted(SPECS, key=lambda spec: spec.run_order)] == [
        "mig",
        "mig_continuous",
        "unsupervised",
        "irs",
        "sap_score",
        "sap_continuous",
        "modularity_explicitness",
        "factor_vae_metric",
        "beta_vae_sklearn",
        "dci",
        "unified_scores",
        "dci_regression",
        "downstream_task_boosted_trees",
        "downstream_task_logistic_regression",
        "fairness",
        "reduced_downstream_task",
        "strong_downstream_task",
    ]
    assert {spec.name for spec in SPECS if spec.fits_classifiers} == {
        "dci",
        "fairness",
        "downstream_task_boosted_trees",
        "downstream_task_logistic_regression",
        "unified_scores",
    }
    assert {spec.name for spec in SPECS if not spec.shared_sample} == {
        "beta_vae_sklearn",
        "factor_vae_metric",
        "strong_downstream_task",
    }
    assert (
        ALIASES["sap"] == "sap_score"
        and ALIASES["downstream_boosted_trees"] == "downstream_task_boosted_trees"
    )


def test_disentanglement_libs_defaults():
    defaults = resolve_parameters("all", None)
    assert defaults["beta_vae_sklearn"] == {"batch_size": 64, "num_train": 10000, "num_eval": 5000}
    assert defaults["factor_vae_metric"] == {
        "batch_size": 64,
        "num_train": 10000,
        "num_eval": 5000,
        "num_variance_estimate": 10000,
        "prune_threshold": 0.05,
    }
    assert defaults["mig"] == {"num_train": 10000, "num_bins": 20}
    assert defaults["sap_score"] == {"num_train": 10000, "num_test": 5000, "continuous_factors": False}
    assert defaults["irs"] == {"num_train": 10000, "num_bins": 20, "diff_quantile": 0.99}
    assert defaults["downstream_task_logistic_regression"] == {
        "num_train": [10, 100, 1000, 10000],
        "num_test": 5000,
    }
    assert defaults["fairness"] == {"num_train": 10000, "num_test_points_per_class": 100}
    # A fresh list each time: changing one result's parameters changes no default.
    defaults["downstream_task_boosted_trees"]["num_train"].append(5)
    assert resolve_parameters(["downstream_boosted_trees"], None)["downstream_task_boosted_trees"][
        "num_train"
    ] == [
        10,
        100,
        1000,
        10000,
    ]


def test_images_requested_by_the_dataset_layer_draws():
    parameters = resolve_parameters("fairness_study", None)
    names = resolve_metrics("fairness_study")
    # BetaVAE: (10,000 + 5,000) points x 64 pairs x 2 images; FactorVAE: 10,000 + 15,000 x 64.
    assert expected_requests(names, parameters) == 1_920_000 + 970_000
    assert expected_requests(["mig", "dci"], parameters) == 0


def test_presets_expand_inside_lists_and_aliases_resolve():
    assert resolve_metrics(["study", "irs"]) == [*PRESETS["study"], "irs"]
    assert resolve_metrics("factor_vae") == ["factor_vae_metric"]
    assert resolve_metrics(["modularity", "modularity_explicitness", "mig"]) == [
        "modularity_explicitness",
        "mig",
    ]
    with pytest.raises(ValueError, match="metrics is empty"):
        resolve_metrics([])
    with pytest.raises(ValueError, match="metric names must be strings, got 3"):
        resolve_metrics(["mig", 3])


@pytest.mark.parametrize(
    ("metric", "key", "value", "allowed"),
    [
        ("mig", "num_train", 0, "a positive integer"),
        ("mig", "num_train", 10.0, "a positive integer"),
        ("mig", "num_train", True, "a positive integer"),
        ("mig", "num_bins", 1, "an integer >= 2"),
        ("unsupervised", "num_bins", "20", "an integer >= 2"),
        ("irs", "diff_quantile", 0.0, "a number in (0, 1]"),
        ("irs", "diff_quantile", 1.5, "a number in (0, 1]"),
        ("irs", "diff_quantile", float("nan"), "a number in (0, 1]"),
        ("factor_vae_metric", "prune_threshold", -0.1, "a number >= 0"),
        ("factor_vae_metric", "batch_size", 1, "an integer >= 2"),
        ("sap_score", "continuous_factors", "no", "true or false"),
        ("sap_score", "continuous_factors", 0, "true or false"),
        ("downstream_task_logistic_regression", "num_train", 100, "a non-empty list of positive integers"),
        ("downstream_task_boosted_trees", "num_train", [10, 0], "a non-empty list of positive integers"),
        ("downstream_task_boosted_trees", "num_train", [], "a non-empty list of positive integers"),
        ("dci", "num_test", -5, "a positive integer"),
        ("fairness", "num_test_points_per_class", 2.5, "a positive integer"),
        ("beta_vae_sklearn", "num_train", 1, "an integer >= 2"),
    ],
)
def test_parameter_values_are_checked(metric, key, value, allowed):
    message = f"params[{metric!r}][{key!r}] = {value!r} is not allowed; {key} must be {allowed}"
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_parameters([metric], {metric: {key: value}})


def test_allowed_values_and_aliases_pass():
    resolved = resolve_parameters(
        ["sap", "irs", "downstream_logistic_regression", "factor_vae"],
        {
            "sap": {"continuous_factors": True},
            "irs": {"diff_quantile": 1},
            "downstream_logistic_regression": {"num_train": (10, 100)},
            "factor_vae": {"prune_threshold": 0},
        },
    )
    assert resolved["sap_score"]["continuous_factors"] is True
    assert resolved["irs"]["diff_quantile"] == 1
    assert resolved["downstream_task_logistic_regression"]["num_train"] == [10, 100]
    assert resolved["factor_vae_metric"]["prune_threshold"] == 0


def test_unknown_keys_and_metrics_are_rejected():
    with pytest.raises(
        ValueError,
        match=r"params\['mig'\] has unknown parameters \['bins'\]; known: \['num_bins', 'num_train'\]",
    ):
        resolve_parameters(["mig"], {"mig": {"bins": 3}})
    with pytest.raises(ValueError, match=r"params names metrics that are not evaluated: \['dci'\]"):
        resolve_parameters(["mig"], {"dci": {"num_train": 10}})
    with pytest.raises(ValueError, match="unknown metric 'mgi'"):
        resolve_parameters(["mgi"], None)
    with pytest.raises(ValueError, match=r"params\['mig'\] must be a dict of parameter values, got 3"):
        resolve_parameters(["mig"], {"mig": 3})


def test_metric_modules_import_neither_the_runner_nor_the_table():
    """No import circles: the runner imports the table, the table imports the metric modules."""
    package = Path(untwine.metrics.__file__).parent
    for path in package.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        if path.stem != "__init__":
            assert "untwine.metrics.runner" not in imported, path.name
        if path.stem not in ("__init__", "runner"):
            assert "untwine.metrics.registry" not in imported, path.name
