"""Ground-truth factor datasets behind one interface (see :mod:`untwine.data.base` for the conventions)."""

from untwine.data.base import FactorSpace, GroundTruthDataset, ImageGridDataset
from untwine.data.labels import LABELLERS, LabelledSet, Labelling, apply_labeller, check_labels
from untwine.data.paths import DatasetFileNotFoundError, data_root
from untwine.data.registry import SPECS, DatasetSpec, get_dataset, get_spec, list_datasets
from untwine.data.stream import Batch, BatchStream, PairStream

__all__ = [
    "LABELLERS",
    "SPECS",
    "Batch",
    "BatchStream",
    "DatasetFileNotFoundError",
    "DatasetSpec",
    "FactorSpace",
    "GroundTruthDataset",
    "ImageGridDataset",
    "LabelledSet",
    "PairStream",
    "Labelling",
    "apply_labeller",
    "check_labels",
    "data_root",
    "get_dataset",
    "get_spec",
    "list_datasets",
]
