"""Scores of a few-label run on its labelled validation split (Locatello et al. 2020, "Disentangling
Factors of Variation Using Few Labels"): the question of that paper -- can a few labels pick the better
model? -- is answered by comparing these with the scores on fresh ground truth across a study's models.

A few-label model with ``model.train_percentage < 1`` trains on the first part of its labelled examples
and keeps the rest as its validation split (:meth:`untwine.data.labels.LabelledSet.split`).  After
training, the validation images are encoded (mean representation) and scored against their labels --
the labeller's output, imprecise when the labeller is, exactly what a practitioner would have:

* MIG on all validation points;
* SAP, DCI and the unified scores with their predictors trained on the first 90 % of the points
  (``ceil(0.9 n)``) and tested on the rest, in order -- the ``train_percentage = 0.9`` of
  disentanglement_lib's ``sap_score_validation`` and ``dci_validation`` configs.

Each metric that cannot run on so few points (a factor with one value among them, say) is recorded with
its error instead of a number; the others go on.  The warnings a metric raises (scikit-learn's "more
classes than half the samples" on a few points, non-converged fits) are recorded with it, counted per
category with the first message, under ``"warnings"``.  ``RUN_DIR/validation.json`` holds the result.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from untwine.metrics.dci import dci
from untwine.metrics.mig import mig
from untwine.metrics.sap import sap
from untwine.metrics.unified_scores import unified_scores
from untwine.training.representation import Encoder

__all__ = ["VALIDATION_NAME", "validation_scores"]

VALIDATION_NAME = "validation.json"
#: the share of the validation points that trains SAP's, DCI's and the unified scores' predictors
PREDICTOR_TRAIN_SHARE = 0.9


def validation_scores(model, seed: int) -> dict[str, Any] | None:
    """The validation split's scores (see the module docstring), or None when the model has no split.

    ``seed`` draws the nuisance factors of rendered validation images (none for deterministic datasets).
    """
    validation = getattr(model, "validation_set", None)
    if validation is None:
        return None
    images = validation.images_of(np.arange(len(validation)), np.random.default_rng(seed))
    codes = Encoder(model).mean_logvar(images)[0].astype(np.float64)
    labels = np.asarray(validation.labels, dtype=np.int64)
    half = math.ceil(len(labels) * PREDICTOR_TRAIN_SHARE)
    halves = (codes[:half], labels[:half], codes[half:], labels[half:])
    calls = {
        "mig": lambda: mig(codes, labels),
        "sap_score": lambda: sap(*halves),
        "dci": lambda: dci(*halves),
        "unified_scores": lambda: unified_scores(*halves),
    }
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    raised: dict[str, dict[str, dict[str, Any]]] = {}
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                values[name] = call()
            except ValueError as error:  # too few or too uniform points for this metric
                errors[name] = str(error)
        for warning in caught:
            entry = raised.setdefault(name, {}).setdefault(
                warning.category.__name__, {"count": 0, "first_message": str(warning.message)}
            )
            entry["count"] += 1
    return {
        "num_points": len(labels),
        "num_train_points": half,
        "label_sizes": list(validation.num_classes),
        "representation": "mean",
        "values": values,
        "errors": errors,
        "warnings": raised,
    }
