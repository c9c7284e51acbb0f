"""Score an outside encoder (or precomputed codes) into a directory laid out like a run's:
``OUT/metrics/<representation>/<metric>.json`` plus ``OUT/encoder.json`` (what the codes came from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from untwine.encoders.loading import load_encoder
from untwine.encoders.record import EncoderRecord, write_encoder_record
from untwine.metrics.output import check_output_dir


def metrics_dir(out_dir: str | Path, representation: str) -> Path:
    return Path(out_dir) / "metrics" / representation


def evaluate_outside(
    kind: str,
    target: str,
    out_dir: str | Path,
    *,
    dataset_name: str | None = None,
    metrics: str | list[str] = "study",
    representation: str = "mean",
    seed: int = 0,
    fast: bool = False,
    params: dict[str, dict[str, Any]] | None = None,
    layout: str = "nhwc",
    device: str = "auto",
    n_jobs: int | None = None,
) -> tuple[dict[str, dict[str, Any]], EncoderRecord]:
    """Score a ``kind`` source (torchscript, onnx, callable, codes) with ``metrics``.

    Everything that can be checked is checked before the first metric runs: metric names and
    parameters, the dataset name, the file, the encoder's output on a probe batch, and then the output
    folder (created only for a source that passed).
    """
    from untwine.data import get_dataset
    from untwine.metrics import resolve_metrics, resolve_parameters
    from untwine.metrics.runner import evaluate_representation

    names = resolve_metrics(metrics)
    resolve_parameters(names, params)
    if representation not in ("mean", "sampled"):
        raise ValueError(f"representation must be mean or sampled, got {representation!r}")
    dataset = get_dataset(dataset_name) if dataset_name else None
    if kind == "codes":
        from untwine.metrics.precomputed import load_codes_file

        if representation != "mean":
            raise ValueError("precomputed codes have no sampled representation; use --representation mean")
        source = load_codes_file(target, dataset)
        record = EncoderRecord(
            kind="codes",
            source=str(target),
            dataset=source.dataset.name,
            layout="-",
            outputs="codes",
            code_dim=source.code_dim,
        )
        representation_fn, dataset = source, source.dataset
    else:
        if dataset is None:
            raise ValueError(f"scoring a {kind} encoder needs --dataset NAME (the images it is given)")
        representation_fn, record = load_encoder(kind, target, dataset, layout=layout, device=device)
        if representation == "sampled" and record.outputs != "mean_logvar":
            raise ValueError(
                f"{target} returns codes only; --representation sampled needs an encoder returning "
                "(mean, log-variance)"
            )
    # The folder is made only once the source has passed its checks: a bad file leaves nothing behind.
    target_dir = check_output_dir(metrics_dir(out_dir, representation))
    write_encoder_record(out_dir, record)
    results = evaluate_representation(
        dataset,
        representation_fn,
        metrics=names,
        seed=seed,
        out_dir=target_dir,
        fast=fast,
        mode=None if kind == "codes" else representation,
        **({"params": params} if params else {}),
        **({"n_jobs": n_jobs} if n_jobs is not None else {}),
    )
    return results, record
