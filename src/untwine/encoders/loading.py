"""Load an outside encoder and check it on a probe batch before any metric runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from untwine.encoders.record import EncoderRecord

ENCODER_KINDS = ("torchscript", "onnx", "callable")
LAYOUTS = ("nhwc", "nchw")
PROBE_IMAGES = 4


class _Batched:
    """Shared batching of a ``images -> tuple of arrays`` function over the dataset's NHWC images."""

    def __init__(self, run, layout: str, batch_size: int, deterministic):
        self._run, self.layout, self.batch_size = run, layout, int(batch_size)
        # None: the metrics' code cache probes the encoder itself (see untwine.metrics.representation).
        self.deterministic = deterministic

    def outputs(self, images) -> tuple[np.ndarray, ...]:
        images = np.asarray(images, dtype=np.float32)
        if self.layout == "nchw":
            images = images.transpose(0, 3, 1, 2)
        parts = [
            self._run(images[i : i + self.batch_size]) for i in range(0, images.shape[0], self.batch_size)
        ]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(parts[0])))


class EncoderCodes(_Batched):
    """An outside encoder returning codes: ``images -> (n, d)``."""

    def __call__(self, images) -> np.ndarray:
        return self.outputs(images)[0]


class EncoderGaussian(_Batched):
    """An outside encoder returning ``(mean, logvar)``: the metrics' mean and sampled representations."""

    def encode_mean_logvar(self, images) -> tuple[np.ndarray, np.ndarray]:
        mean, logvar = self.outputs(images)
        return mean, logvar


def _load_run_function(kind: str, target: str, device: str):
    if kind == "callable":
        from untwine.encoders.python_callable import load_callable

        run = load_callable(target)
        return run, run.deterministic
    path = Path(target)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} file at {path}")
    if kind == "torchscript":
        from untwine.encoders.torchscript import load_torchscript

        return load_torchscript(path, device), None
    if kind == "onnx":
        from untwine.encoders.onnx_file import load_onnx

        return load_onnx(path), None
    raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {kind!r}")


def check_outputs(outputs, num_images: int, source: str) -> tuple[str, int]:
    """``("codes" | "mean_logvar", d)`` of a probe batch's outputs, or a ValueError naming the problem."""
    if len(outputs) not in (1, 2):
        raise ValueError(
            f"{source}: the encoder returned {len(outputs)} outputs; it must return codes (n, d) or a pair "
            "(mean, log-variance)"
        )
    names = ("codes",) if len(outputs) == 1 else ("mean", "log-variance")
    for name, output in zip(names, outputs, strict=True):
        if output.ndim != 2 or output.shape[0] != num_images:
            raise ValueError(
                f"{source}: the encoder's {name} for {num_images} images have shape {tuple(output.shape)}; "
                f"expected ({num_images}, d) -- one row of codes per image"
            )
        if output.dtype.kind not in "fiu":
            raise ValueError(f"{source}: the encoder's {name} are not numbers (dtype {output.dtype})")
        if not np.isfinite(output).all():
            raise ValueError(f"{source}: the encoder's {name} contain NaN or infinity on the probe images")
    if len(outputs) == 2 and outputs[0].shape != outputs[1].shape:
        raise ValueError(
            f"{source}: mean {tuple(outputs[0].shape)} and log-variance {tuple(outputs[1].shape)} differ in shape"
        )
    return ("codes" if len(outputs) == 1 else "mean_logvar"), int(outputs[0].shape[1])


def load_encoder(
    kind: str,
    target: str,
    dataset,
    *,
    layout: str = "nhwc",
    batch_size: int = 256,
    device: str = "auto",
) -> tuple[EncoderCodes | EncoderGaussian, EncoderRecord]:
    """Load ``target`` as a ``kind`` encoder (torchscript, onnx, callable) and check it on
    :data:`PROBE_IMAGES` images of ``dataset``: the outputs must be ``(n, d)`` codes or a
    ``(mean, logvar)`` pair, numeric and finite.  Returns the representation and its record."""
    if kind not in ENCODER_KINDS:
        raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {kind!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    run, deterministic = _load_run_function(kind, target, device)
    probe_rng = np.random.default_rng(0)
    images = dataset.sample_observations_from_factors(
        dataset.sample_factors(PROBE_IMAGES, probe_rng), probe_rng
    )
    probe = _Batched(run, layout, batch_size, deterministic)
    try:
        outputs = probe.outputs(images)
    except Exception as error:
        shape = tuple(np.asarray(images).shape)
        if layout == "nchw":
            shape = (shape[0], shape[3], shape[1], shape[2])
        raise ValueError(
            f"{target}: the encoder failed on {PROBE_IMAGES} images of {getattr(dataset, 'name', 'the dataset')} "
            f"shaped {shape} ({layout.upper()}, float32 in [0, 1]): {type(error).__name__}: "
            f"{str(error).splitlines()[0][:300] if str(error) else ''} -- check --layout and --dataset"
        ) from None
    outputs_kind, code_dim = check_outputs(outputs, PROBE_IMAGES, target)
    wrapper = EncoderGaussian if outputs_kind == "mean_logvar" else EncoderCodes
    record = EncoderRecord(
        kind=kind,
        source=str(target),
        dataset=getattr(dataset, "name", type(dataset).__name__),
        layout=layout,
        outputs=outputs_kind,
        code_dim=code_dim,
    )
    return wrapper(run, layout, batch_size, deterministic), record
