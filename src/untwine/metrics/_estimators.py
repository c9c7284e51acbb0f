"""The per-factor classifiers behind DCI, the downstream tasks and fairness, and the engine that fits them.

Estimators (disentanglement_lib's settings):

* ``"gbt"``: ``sklearn.ensemble.GradientBoostingClassifier()`` (faithful mode);
* ``"binned_gbt"``: :class:`~untwine.metrics._binned_gbt.BinnedGradientBoostingClassifier`, the same
  boosting algorithm with at most 255 thresholds per code dimension (fast mode);
* ``"lr_cv"``: ``LogisticRegressionCV(Cs=10, cv=KFold(5), scoring="accuracy")`` (faithful mode);
* ``"lr_cv_fast"``: the same cross-validation on the first 1,000 training points only, then one
  ``LogisticRegression(C=chosen C)`` on all points (fast mode; identical to ``"lr_cv"`` up to 1,000).

Randomness of the gradient-boosted trees.  ``GradientBoostingClassifier`` draws one integer from its
``random_state`` per tree (it only breaks ties between equally good split features).
disentanglement_lib passes no ``random_state``, so its K per-factor fits consume numpy's global random
state one after the other.  Here the fit of factor ``j`` gets a ``RandomState(seed)`` advanced by
exactly the draws of the fits of factors ``0 .. j-1`` (:func:`gbt_random_states`); the downstream task
continues that stream over its training-set sizes, as dlib's fits did.  The fits are thus independent
tasks that can run in parallel, in any order, and with ``seed=0`` they reproduce the reference values
computed after ``np.random.seed(0)`` bit for bit.

Fits are described by :class:`FitTask` and keyed, so that the same fit (same data, factor, size and
seed) requested by DCI, the downstream task and fairness runs once.  :class:`FitEngine` runs them in
worker processes (one BLAS/OpenMP thread each), largest first, or lazily in-process for ``n_jobs=1``.
"""

from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from untwine.metrics.fit_warnings import WarningTally, counting_fit_warnings

RAND_R_MAX = 0x7FFFFFFF  # scikit-learn's tree splitter draws randint(0, RAND_R_MAX) once per tree
N_ESTIMATORS = 100  # GradientBoostingClassifier() default
KINDS = ("gbt", "binned_gbt", "lr_cv", "lr_cv_fast")
FAST_CV_POINTS = 1000  # lr_cv_fast chooses C on this many points


def trees_per_stage(num_classes: int) -> int:
    return 1 if num_classes <= 2 else num_classes


def gbt_random_states(seed, class_counts, n_estimators: int = N_ESTIMATORS) -> list[np.random.RandomState]:
    """The RandomState each per-factor GBT fit would see if the fits ran in order on one shared stream.

    ``seed`` is an int (a fresh ``RandomState(seed)`` stream) or a ``RandomState`` stream, which is
    advanced past the draws of these fits (so consecutive calls continue one stream).
    """
    stream = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    states = []
    for num_classes in class_counts:
        state = np.random.RandomState()
        state.set_state(stream.get_state())
        states.append(state)
        stream.randint(0, RAND_R_MAX, size=n_estimators * trees_per_stage(int(num_classes)))
    return states


def _supported(cls, **kwargs) -> dict:
    """Keep only the keyword arguments ``cls`` accepts (older scikit-learn lacks some)."""
    parameters = inspect.signature(cls).parameters
    return {k: v for k, v in kwargs.items() if k in parameters}


def make_estimator(kind: str, random_state=None):
    if kind == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=random_state)
    if kind == "binned_gbt":
        from untwine.metrics._binned_gbt import BinnedGradientBoostingClassifier

        return BinnedGradientBoostingClassifier()
    if kind == "lr_cv":
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import KFold

        # scoring="accuracy" explicitly: scikit-learn 1.11 changes the default to neg_log_loss.
        # l1_ratios=(0,) is the L2 penalty that the old default (None) selected.
        return LogisticRegressionCV(
            Cs=10,
            cv=KFold(n_splits=5),
            scoring="accuracy",
            **_supported(LogisticRegressionCV, l1_ratios=(0.0,), use_legacy_attributes=False),
        )
    if kind == "lr_cv_fast":
        return FastLogisticRegressionCV()
    raise ValueError(f"unknown estimator kind {kind!r}; expected one of {KINDS}")


class FastLogisticRegressionCV:
    """``"lr_cv"``'s choice of C made on the first ``FAST_CV_POINTS`` points, then one fit on all points."""

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        prefix = slice(0, FAST_CV_POINTS)
        self.search_ = None
        if X.shape[0] <= FAST_CV_POINTS or np.unique(y[prefix]).shape[0] < np.unique(y).shape[0]:
            self.model_ = make_estimator("lr_cv").fit(X, y)  # small enough, or the prefix misses a class
        else:
            # The search is the very fit "lr_cv" makes on the first FAST_CV_POINTS points (kept, so the
            # downstream task's 1,000-point result comes for free).
            self.search_ = make_estimator("lr_cv").fit(X[prefix], y[prefix])
            self.model_ = LogisticRegression(C=float(np.atleast_1d(self.search_.C_)[0])).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)


class ConstantClassifier:
    """What any classifier can do with a training set of one class: predict that class."""

    def __init__(self, value, num_features: int):
        self.classes_ = np.array([value])
        self.feature_importances_ = np.zeros(num_features)

    def predict(self, X) -> np.ndarray:
        return np.full(np.asarray(X).shape[0], self.classes_[0])


@dataclass
class FitTask:
    """One classifier fit: predict ``y_train`` from ``x_train``, score on train and (if given) test."""

    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    random_state: Any = None

    def cost(self) -> float:
        """Rough relative cost, used to start the largest fits first."""
        n, d = self.x_train.shape
        num_classes = np.unique(self.y_train).shape[0]
        if self.kind == "gbt":
            return n * np.log2(n + 1) * d * trees_per_stage(num_classes)
        if self.kind == "binned_gbt":
            return n * d * trees_per_stage(num_classes) * 2.0
        return n * d * num_classes * 50.0


@dataclass
class PrefixFit:
    """A fit that another task makes on the way: the ``"lr_cv"`` fit on the first ``FAST_CV_POINTS``
    points, which the ``"lr_cv_fast"`` task ``base_key`` makes to choose C.  ``task`` (that same fit)
    runs only if the base task did not make it (its prefix missed a class)."""

    base_key: Any
    task: FitTask


@dataclass
class FitResult:
    train_accuracy: float
    test_accuracy: float
    importances: np.ndarray | None
    model: Any
    seconds: float
    cpu_seconds: float
    prefix: FitResult | None = None  # the "lr_cv" fit on the first FAST_CV_POINTS points, if made
    # Convergence warnings of the fit (counted in the worker, travelling back with the result).  A prefix
    # fit's warnings are counted in the fit that made it.
    warnings: WarningTally = field(default_factory=WarningTally)


def _accuracies(model, task: FitTask, train_pred=None) -> tuple[float, float]:
    if train_pred is None:
        train_pred = model.predict(task.x_train)
    test_pred = None if task.x_test is None else model.predict(task.x_test)
    return (
        float(np.mean(train_pred == task.y_train)),
        float("nan") if test_pred is None else float(np.mean(test_pred == task.y_test)),
    )


def run_fit(task: FitTask) -> FitResult:
    """Fit one task (in whatever process calls it) with one BLAS/OpenMP thread."""
    import sklearn
    from threadpoolctl import threadpool_limits

    start, cpu_start = time.perf_counter(), time.process_time()
    # The inputs are validated (finite, shapes) before any task is made: scikit-learn's own parameter
    # and finiteness checks, repeated for each of the thousands of trees, only cost time.
    quiet = sklearn.config_context(
        **_supported(sklearn.config_context, skip_parameter_validation=True, assume_finite=True)
    )
    with threadpool_limits(limits=1), counting_fit_warnings() as tally, quiet:
        classes = np.unique(task.y_train)
        if classes.shape[0] < 2:
            model = ConstantClassifier(classes[0], task.x_train.shape[1])
            train_pred = model.predict(task.x_train)
        elif task.kind == "gbt":
            # Column-major float32 input: the same splits as C order (scikit-learn's trees run in float32
            # anyway), with faster column access while sorting.
            x = np.asfortranarray(task.x_train, dtype=np.float32)
            model = make_estimator("gbt", task.random_state).fit(x, task.y_train)
            train_pred = model.predict(x)
        else:
            model = make_estimator(task.kind, task.random_state).fit(task.x_train, task.y_train)
            train_pred = model.predict_train() if task.kind == "binned_gbt" else model.predict(task.x_train)
        train_accuracy, test_accuracy = _accuracies(model, task, train_pred)
        importances = getattr(model, "feature_importances_", None)
        prefix = None
        if getattr(model, "search_", None) is not None:
            points = slice(0, FAST_CV_POINTS)
            prefix_task = FitTask(
                "lr_cv", task.x_train[points], task.y_train[points], task.x_test, task.y_test
            )
            prefix = FitResult(*_accuracies(model.search_, prefix_task), None, model.search_, 0.0, 0.0)
    return FitResult(
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        importances=None if importances is None else np.abs(np.asarray(importances, dtype=np.float64)),
        model=model,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        prefix=prefix,
        warnings=tally,
    )


def _import_estimators() -> None:
    """Run in each worker as soon as the pool exists: the imports cost a second or two per process."""
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401


class _Lazy:
    def __init__(self, task):
        self._task = task
        self._value = None

    def result(self):
        if self._value is None:
            self._value = run_fit(self._task)
            self._task = None
        return self._value


class FitEngine:
    """Runs keyed :class:`FitTask` s once each; in ``n_jobs`` worker processes when ``n_jobs > 1``.

    ``add`` queues tasks (a key seen before is ignored: the fit is shared; a :class:`PrefixFit` is
    answered by the result of its base task); ``start`` sends the queued tasks to the workers, largest
    first; ``result`` waits for one.  With ``n_jobs=1`` a fit runs when its result is first asked for.
    """

    def __init__(self, n_jobs: int = 1):
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0 or n_jobs < -1:
            raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
        self.n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
        self._futures: dict = {}
        self._pending: list = []
        self._prefixes: dict = {}
        self._executor = None

    def add(self, key, task: FitTask | PrefixFit) -> None:
        if key in self._futures or key in self._prefixes or any(k == key for k, _ in self._pending):
            return
        if isinstance(task, PrefixFit):
            self._prefixes[key] = task
            return
        if self.n_jobs == 1:
            self._futures[key] = _Lazy(task)
        else:
            self._pending.append((key, task))

    def warm_up(self, wait: bool = False) -> None:
        """Start the worker processes and their imports now, while the caller does other work
        (``wait``: return once every worker has imported)."""
        if self.n_jobs > 1 and self._executor is None:
            from untwine.utils.workers import shared_worker_pool

            self._executor = shared_worker_pool(self.n_jobs, threads=1)
            imports = [self._executor.submit(_import_estimators) for _ in range(self.n_jobs)]
            if wait:
                for future in imports:
                    future.result()

    def terminate(self) -> None:
        """Kill the fit workers now (an interrupted evaluation); a later evaluation starts fresh ones."""
        if self._executor is not None:
            from untwine.utils.workers import terminate_shared_pools

            terminate_shared_pools()
            self._executor = None

    def start(self) -> None:
        if not self._pending:
            return
        self.warm_up()
        for key, task in sorted(self._pending, key=lambda item: -item[1].cost()):
            self._futures[key] = self._executor.submit(run_fit, task)
        self._pending = []

    def result(self, key) -> FitResult:
        if key in self._prefixes:
            prefix = self._prefixes[key]
            made = self.result(prefix.base_key).prefix
            return made if made is not None else run_fit(prefix.task)
        if key not in self._futures:
            self.start()
        return self._futures[key].result()

    def results(self, keys) -> list[FitResult]:
        self.start()
        return [self.result(key) for key in keys]
