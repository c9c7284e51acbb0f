"""Turning a model into codes for the dataset-layer metrics, encoding each distinct image at most once.

A *representation function* is anything that maps a float32 HWC image batch ``(n, H, W, C)`` to codes
``(n, d)``: a plain callable (a user's model, a TorchScript wrapper), or a Gaussian encoder -- an object
with ``encode_mean_logvar(images) -> (mean, logvar)``, or one of
:mod:`untwine.training.representation`'s mean/sampled representations (``.encoder.mean_logvar`` and
``.kind``), whose ``kind`` then sets the default ``mode``.

:class:`CodeSource` wraps one for one dataset and one evaluation:

* ``mode="mean"`` codes are the encoder mean (or the callable's output); ``mode="sampled"`` codes are
  ``mean + exp(logvar / 2) * eps`` with fresh ``eps ~ N(0, I)`` from the metric's generator at every
  use, as disentanglement_lib's sampled representation draws fresh noise at every call.
* When the dataset is deterministic (``dataset.deterministic``: an image is a pure function of its
  factors) and the function the source calls (the callable, or ``encode_mean_logvar``) is known to be
  deterministic, the codes -- or the (mean, logvar) pair -- of every distinct factor combination are
  cached under ``dataset.factors_to_index``: each distinct image is rendered and encoded at most once
  per evaluation, however many metrics and samples ask for it.  Known deterministic means: declared by
  the caller (``deterministic=True``) or by the representation itself (a ``deterministic = True``
  attribute, as untwine's own mean/sampled/TorchScript representations have: their encoder runs in
  eval mode), or -- when neither says -- checked: a probe batch of 8 images is encoded twice and the
  cache is used only if both outputs are bit-identical.  A representation that samples internally
  is therefore never cached (caching it would freeze its noise per image); ``deterministic=False``
  turns the cache off without a probe.
* Otherwise (nuisance factors or noise in the images, or a stochastic representation) every request
  renders and encodes afresh, in batches of ``batch_size``.

Codes keep the dtype the model returns (float32 for torch models): the histogram metrics depend on it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from untwine.utils.rng import as_generator

MODES = ("mean", "sampled")


def gaussian_encoder(representation_fn):
    """The ``images -> (mean, logvar)`` function of a Gaussian encoder, or None for a plain callable."""
    if hasattr(representation_fn, "encode_mean_logvar"):
        return representation_fn.encode_mean_logvar
    encoder = getattr(representation_fn, "encoder", None)
    if getattr(representation_fn, "kind", None) in MODES and hasattr(encoder, "mean_logvar"):
        return encoder.mean_logvar
    return None


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class CodeCache:
    """The cached codes -- or (mean, logvar) of a Gaussian encoder -- of distinct images, by factor index.

    One is made per :class:`CodeSource` by default.  Pass one object to several evaluations to share it:
    this is valid for the mean and the sampled representation of *one* Gaussian encoder on *one*
    dataset (the cache holds mean and log-variance; sampled codes add their noise afterwards), which
    is how a study evaluates a model.  ``signature`` records what filled it (dataset, encoder kind,
    encoding precision); a source with another signature clears it before use.
    """

    def __init__(self):
        self.keys = np.zeros(0, dtype=np.int64)
        self.values: np.ndarray | None = None  # (num_cached, d) or (num_cached, 2, d) for Gaussian encoders
        self.signature: tuple | None = None

    def claim(self, signature: tuple) -> None:
        if self.signature != signature:
            self.keys, self.values, self.signature = np.zeros(0, dtype=np.int64), None, signature

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        all_keys = np.concatenate([self.keys, keys])
        all_values = values if self.values is None else np.concatenate([self.values, values])
        order = np.argsort(all_keys, kind="stable")
        self.keys, self.values = all_keys[order], all_values[order]


class CodeSource:
    """Codes of a representation on a dataset, with the per-image cache described in the module docstring.

    Args:
        dataset: a :class:`~untwine.data.base.GroundTruthDataset` (or anything with ``factor_sizes``,
            ``sample_factors``, ``sample_observations_from_factors``, ``factors_to_index`` and
            ``deterministic``).
        representation_fn: callable images -> codes, or an object with ``encode_mean_logvar``.
        mode: ``"mean"`` or ``"sampled"`` (``"sampled"`` needs a Gaussian encoder); default: the
            representation's ``kind`` if it has one, else ``"mean"``.
        deterministic: True/False declares whether the representation gives the same output for the
            same images (True enables the cache, False disables it); None (default): the
            representation's own ``deterministic`` attribute, else a probe (see the module docstring).
        batch_size: images rendered and encoded per call of the model (does not change any value).
        cache: set False to encode every request afresh even when caching is valid.
        store: a :class:`CodeCache` to use (shared with other sources, see there); default: a new one.
        precision: the precision the representation encodes in (part of the store's signature).
    """

    def __init__(
        self,
        dataset,
        representation_fn,
        *,
        mode: str | None = None,
        deterministic: bool | None = None,
        batch_size: int = 256,
        cache: bool = True,
        store: CodeCache | None = None,
        precision: str | None = None,
    ):
        if isinstance(representation_fn, CodeSource):
            raise TypeError("representation_fn is already a CodeSource")
        if mode is None:
            mode = getattr(representation_fn, "kind", "mean")
            mode = mode if mode in MODES else "mean"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.dataset = dataset
        self._mean_logvar = gaussian_encoder(representation_fn)
        self.gaussian = self._mean_logvar is not None
        if not self.gaussian and not callable(representation_fn):
            raise TypeError(
                "representation_fn must be callable (images -> codes) or have encode_mean_logvar(images)"
            )
        if mode == "sampled" and not self.gaussian:
            raise ValueError(
                "mode='sampled' needs a Gaussian encoder (encode_mean_logvar(images) -> mean, logvar)"
            )
        self.representation_fn = representation_fn
        self.mode = mode
        self.batch_size = int(batch_size)
        self.num_encoded = 0  # images passed through the model
        self.num_requested = 0  # code rows handed out
        self.determinism = "not checked"  # how the cache decision was made (reported in stats)
        self.cached = False
        if cache and getattr(dataset, "deterministic", False):
            self.cached = self._is_deterministic(deterministic)
        self.store = store if store is not None else CodeCache()
        if self.cached:  # the store must hold what this source would compute, else it starts afresh
            self.store.claim((getattr(dataset, "name", type(dataset).__name__), self.gaussian, precision))

    def _is_deterministic(self, declared: bool | None) -> bool:
        if declared is None:
            declared = getattr(self.representation_fn, "deterministic", None)
        if declared is not None:
            self.determinism = "declared deterministic" if declared else "declared random"
            return bool(declared)
        # The probe draws from its own fixed generator: the metrics' draws stay what they would be.
        probe_rng = np.random.default_rng(0)
        images = self.dataset.sample_observations_from_factors(
            self.dataset.sample_factors(8, probe_rng), probe_rng
        )
        first, second = self._encode_images(images), self._encode_images(images)
        same = first.shape == second.shape and np.array_equal(first, second)
        self.determinism = (
            "probed: same output twice"
            if same
            else "probed: output differs between two encodings of the same images"
        )
        return same

    # -- encoding -----------------------------------------------------------------------------------
    def _encode_images(self, images) -> np.ndarray:
        """Model output for one batch: (n, d) codes, or (n, 2, d) stacked mean/logvar."""
        if self.gaussian:
            mean, logvar = self._mean_logvar(images)
            out = np.stack([_to_numpy(mean), _to_numpy(logvar)], axis=1)
            if out.ndim != 3:
                raise ValueError(
                    f"encode_mean_logvar must return two (n, d) arrays, got shape {out.shape[::2]}"
                )
        else:
            out = _to_numpy(self.representation_fn(images))
            if out.ndim != 2:
                raise ValueError(f"representation_fn must return (n, d) codes, got shape {out.shape}")
        if out.shape[0] != len(images):
            raise ValueError(f"representation_fn returned {out.shape[0]} codes for {len(images)} images")
        if out.dtype.kind != "f":
            out = out.astype(np.float64)
        if not np.isfinite(out[:, 0] if self.gaussian else out).all():
            raise ValueError("representation_fn returned non-finite codes (NaN or inf)")
        return out

    def _encode_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chunks = []
        for start in range(0, factors.shape[0], self.batch_size):
            images = self.dataset.sample_observations_from_factors(
                factors[start : start + self.batch_size], rng
            )
            chunks.append(self._encode_images(images))
            self.num_encoded += len(images)
        return np.concatenate(chunks, axis=0)

    def _lookup(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        keys = np.asarray(self.dataset.factors_to_index(factors), dtype=np.int64)
        unique_keys, first = np.unique(keys, return_index=True)
        cached = self.store.keys
        if cached.shape[0]:
            position = np.minimum(np.searchsorted(cached, unique_keys), cached.shape[0] - 1)
            known = cached[position] == unique_keys
        else:
            known = np.zeros(unique_keys.shape[0], dtype=bool)
        missing = ~known
        if missing.any():
            self.store.insert(unique_keys[missing], self._encode_factors(factors[first[missing]], rng))
        return self.store.values[np.searchsorted(self.store.keys, keys)]

    # -- public -------------------------------------------------------------------------------------
    def codes(self, factors, rng) -> np.ndarray:
        """Codes ``(n, d)`` of observations of the given factor rows (validated by the dataset)."""
        rng = as_generator(rng)
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[0] == 0:
            raise ValueError(
                f"factors must be a non-empty 2-D array (n, num_factors), got shape {factors.shape}"
            )
        self.num_requested += factors.shape[0]
        raw = self._lookup(factors, rng) if self.cached else self._encode_factors(factors, rng)
        if not self.gaussian:
            return raw
        mean, logvar = raw[:, 0], raw[:, 1]
        if self.mode == "mean":
            return mean
        noise = rng.standard_normal(mean.shape).astype(mean.dtype, copy=False)
        return mean + np.exp(0.5 * logvar) * noise

    def encode_all(self, rng, threads: int = 1, chunk: int = 8192) -> None:
        """Encode every factor combination once, into the cache (only when the cache is in use).

        Worth it when an evaluation will ask for most of the grid anyway (the BetaVAE and FactorVAE
        scores draw millions of images from it): large batches, and ``threads`` torch threads while no
        classifier fits are running, instead of many small encodes in a loaded main process.
        """
        if not self.cached:
            return
        sizes = np.asarray(self.dataset.factor_sizes, dtype=np.int64)
        total = int(np.prod(sizes))
        known = self.store.keys
        keys, values = [], []
        with _torch_threads(threads):
            for start in range(0, total, chunk):
                grid = np.stack(np.unravel_index(np.arange(start, min(start + chunk, total)), sizes), axis=1)
                chunk_keys = np.asarray(self.dataset.factors_to_index(grid), dtype=np.int64)
                if known.shape[0]:
                    new = ~np.isin(chunk_keys, known)
                    grid, chunk_keys = grid[new], chunk_keys[new]
                if chunk_keys.shape[0]:
                    keys.append(chunk_keys)
                    values.append(self._encode_factors(grid, rng))
        if keys:
            self.store.insert(np.concatenate(keys), np.concatenate(values))

    def sample(self, num: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """``num`` factor rows drawn uniformly and their codes: ``(factors, codes)``."""
        rng = as_generator(rng)
        factors = self.dataset.sample_factors(num, rng)
        return factors, self.codes(factors, rng)

    def stats(self) -> dict[str, Any]:
        return {
            "cached": self.cached,
            "determinism": self.determinism,
            "mode": self.mode,
            "images_encoded": int(self.num_encoded),
            "codes_requested": int(self.num_requested),
            "distinct_images_cached": int(self.store.keys.shape[0]),
        }


class _torch_threads:
    """Run a block with ``threads`` torch intra-op threads if torch is in use (restored afterwards)."""

    def __init__(self, threads: int):
        self.threads = int(threads)
        self.before = None

    def __enter__(self):
        torch = sys.modules.get("torch")
        if torch is not None and self.threads > 0:
            self.before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            sys.modules["torch"].set_num_threads(self.before)
        return False


def as_code_source(dataset, representation_fn, **kwargs) -> CodeSource:
    """Return ``representation_fn`` if it already is a CodeSource for ``dataset``, else wrap it."""
    if isinstance(representation_fn, CodeSource):
        if representation_fn.dataset is not dataset:
            raise ValueError("representation_fn is a CodeSource for another dataset")
        return representation_fn
    return CodeSource(dataset, representation_fn, **kwargs)
