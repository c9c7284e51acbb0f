"""Every dataset by name: an explicit table (no registration by import side effects).

A :class:`DatasetSpec` carries what can be said without touching the disk (factors, shape, files,
whether it is procedural); :func:`get_dataset` imports the loader module only when asked.
A procedural dataset is never swapped for a real one or vice versa: the name is the dataset.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from untwine.data.base import GroundTruthDataset
from untwine.data.paths import dataset_dir

DSPRITES_FACTORS = ("shape", "scale", "orientation", "posX", "posY")
DSPRITES_SIZES = (3, 6, 40, 32, 32)
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_SIZES = (10, 10, 10, 8, 4, 15)
MPI3D_FACTORS = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
MPI3D_SIZES = (6, 6, 2, 3, 3, 40, 40)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: str  # "module:function"; the function takes (data_dir: Path | None, **kwargs)
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    num_channels: int
    description: str
    folder: str | None = None  # folder under the data root; None for procedural datasets
    files: tuple[str, ...] = ()  # files the loader needs, relative to the folder
    nuisance: tuple[str, ...] = ()
    loader_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def procedural(self) -> bool:
        return self.folder is None

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (64, 64, self.num_channels)

    def data_dir(self, root: str | os.PathLike | None = None) -> Path | None:
        return None if self.folder is None else dataset_dir(self.folder, root)

    def missing_files(self, root: str | os.PathLike | None = None) -> list[Path]:
        directory = self.data_dir(root)
        if directory is None:
            return []
        return [directory / f for f in self.files if not (directory / f).exists()]


_DSPRITES_NPZ = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _idx_files(split: str) -> tuple[str, str]:
    prefix = {"train": "train", "test": "t10k"}[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


_SCREAM = "scream.jpg"


def _dsprites(
    name,
    variant,
    channels,
    description,
    files=(_DSPRITES_NPZ,),
    factors=DSPRITES_FACTORS,
    sizes=DSPRITES_SIZES,
    nuisance=(),
):
    return DatasetSpec(
        name,
        "untwine.data.dsprites:load_dsprites",
        factors,
        sizes,
        channels,
        description,
        folder="dsprites",
        files=files,
        nuisance=nuisance,
        loader_kwargs={"variant": variant},
    )


def _procedural(name, loader, factors, sizes, channels, description, **kwargs):
    return DatasetSpec(name, loader, factors, sizes, channels, description, loader_kwargs=kwargs)


def _mpi3d(name, variant, description):
    return DatasetSpec(
        name,
        "untwine.data.mpi3d:load_mpi3d",
        MPI3D_FACTORS,
        MPI3D_SIZES,
        3,
        description,
        folder="mpi3d",
        files=(f"{name}.npz",),
        loader_kwargs={"variant": variant},
    )


_PROC_DSPRITES = "untwine.data.procedural_dsprites:load_procedural_dsprites"

SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _dsprites("dsprites_full", "full", 1, "dSprites (Matthey et al. 2017): 2D shapes, binary 64x64."),
        _dsprites(
            "dsprites_noshape",
            "noshape",
            1,
            "dSprites without the shape factor (shape is nuisance).",
            factors=DSPRITES_FACTORS[1:],
            sizes=DSPRITES_SIZES[1:],
            nuisance=("shape",),
        ),
        _dsprites(
            "color_dsprites",
            "color",
            3,
            "dSprites with a random colour U(0.5,1)^3 per image.",
            nuisance=("color",),
        ),
        _dsprites(
            "noisy_dsprites",
            "noisy",
            3,
            "dSprites on uniform noise: min(x + U(0,1), 1).",
            nuisance=("noise",),
        ),
        _dsprites(
            "scream_dsprites",
            "scream",
            3,
            "dSprites inverted on a random crop of The Scream.",
            files=(_DSPRITES_NPZ, _SCREAM),
            nuisance=("background",),
        ),
        DatasetSpec(
            "shapes3d",
            "untwine.data.shapes3d:load_shapes3d",
            SHAPES3D_FACTORS,
            SHAPES3D_SIZES,
            3,
            "3D Shapes (Burgess & Kim 2018): floor, wall and object in a room.",
            folder="shapes3d",
            files=("3dshapes.h5",),
        ),
        _mpi3d("mpi3d_toy", "toy", "MPI3D-toy (Gondal et al. 2019): simple rendered robot-arm scenes."),
        _mpi3d(
            "mpi3d_realistic", "realistic", "MPI3D-realistic: realistic renderings of the robot-arm scenes."
        ),
        _mpi3d("mpi3d_real", "real", "MPI3D-real: photographs of the real robot-arm platform."),
        DatasetSpec(
            "cars3d",
            "untwine.data.cars3d:load_cars3d",
            ("elevation", "azimuth", "object"),
            (4, 24, 183),
            3,
            "Cars3D (Reed et al. 2015): 183 car models, 4 elevations x 24 azimuths.",
            folder="cars3d",
            files=("cars",),
        ),
        DatasetSpec(
            "smallnorb",
            "untwine.data.smallnorb:load_smallnorb",
            ("category", "elevation", "azimuth", "lighting"),
            (5, 9, 18, 6),
            1,
            "SmallNORB (LeCun et al. 2004): toys photographed under varied pose and light, camera 0.",
            folder="smallnorb",
            files=tuple(
                f"smallnorb-5x{s}x9x18x6x2x96x96-{split}-{kind}.mat"
                for split, s in (("training", "46789"), ("testing", "01235"))
                for kind in ("dat", "cat", "info")
            ),
            nuisance=("instance",),
        ),
        DatasetSpec(
            "mnist",
            "untwine.data.idx:load_idx_dataset",
            ("label",),
            (10,),
            1,
            "MNIST (LeCun et al. 1998): 28x28 handwritten digits, label as the factor (train split; "
            "split='test' for the test set).",
            folder="mnist",
            files=tuple(name for split in ("train", "test") for name in _idx_files(split)),
            loader_kwargs={"dataset": "mnist"},
        ),
        DatasetSpec(
            "fashion_mnist",
            "untwine.data.idx:load_idx_dataset",
            ("label",),
            (10,),
            1,
            "Fashion-MNIST (Xiao et al. 2017): 28x28 clothing images, label as the factor; read from "
            "Debian's dataset-fashion-mnist when installed.",
            folder="fashion_mnist",
            files=tuple(name for split in ("train", "test") for name in _idx_files(split)),
            loader_kwargs={"dataset": "fashion_mnist"},
        ),
        _procedural(
            "procedural_dsprites",
            _PROC_DSPRITES,
            DSPRITES_FACTORS,
            DSPRITES_SIZES,
            1,
            "Built-in dSprites: the exact dSprites factor grid rendered procedurally (no download).",
            variant="full",
        ),
        _procedural(
            "procedural_color_dsprites",
            _PROC_DSPRITES,
            DSPRITES_FACTORS,
            DSPRITES_SIZES,
            3,
            "Built-in colour dSprites (random colour per image).",
            variant="color",
        ),
        _procedural(
            "procedural_noisy_dsprites",
            _PROC_DSPRITES,
            DSPRITES_FACTORS,
            DSPRITES_SIZES,
            3,
            "Built-in noisy dSprites (uniform noise background).",
            variant="noisy",
        ),
        _procedural(
            "procedural_scream_dsprites",
            _PROC_DSPRITES,
            DSPRITES_FACTORS,
            DSPRITES_SIZES,
            3,
            "Built-in scream dSprites (a procedural texture stands in for the painting).",
            variant="scream",
        ),
        _procedural(
            "procedural_shapes3d",
            "untwine.data.procedural_shapes3d:load_procedural_shapes3d",
            SHAPES3D_FACTORS,
            SHAPES3D_SIZES,
            3,
            "Built-in 3D-shapes scene: floor, wall, one shaded object (no download).",
        ),
    )
}


def list_datasets() -> list[str]:
    return list(SPECS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a named dataset, or of a user's file named ``file:PATH`` (see :mod:`untwine.data.user`)."""
    from untwine.data.user import is_file_dataset, load_file_dataset

    if is_file_dataset(name):
        dataset = load_file_dataset(name)
        return DatasetSpec(
            name=name,
            loader="untwine.data.user:load_file_dataset",
            factor_names=tuple(dataset.factor_names),
            factor_sizes=tuple(dataset.factor_sizes),
            num_channels=dataset.num_channels,
            description=f"a user's dataset file ({len(dataset._images)} images)",
        )
    try:
        return SPECS[name]
    except KeyError:
        hint = ""
        if os.sep in str(name) or os.path.exists(name):  # a path given where a name belongs
            hint = (
                " (a dataset is named, not given as a path: pass its data root with --root or $UNTWINE_DATA)"
            )
        raise KeyError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(SPECS)}") from None


def get_dataset(name: str, data_root: str | os.PathLike | None = None, **kwargs: Any) -> GroundTruthDataset:
    """Load a dataset by name.  Real datasets read their files from ``data_root/<folder>``
    (default ``$UNTWINE_DATA`` or ``~/.cache/untwine``); procedural ones need nothing on disk.
    Extra keyword arguments go to the loader (documented on each loader function).  ``file:PATH`` names
    a user's ``.npz``/``.h5`` file of images and factors (:mod:`untwine.data.user`)."""
    from untwine.data.user import is_file_dataset, load_file_dataset

    if is_file_dataset(name):
        return load_file_dataset(name)
    spec = get_spec(name)
    module_name, function_name = spec.loader.split(":")
    loader = getattr(importlib.import_module(module_name), function_name)
    dataset = loader(spec.data_dir(data_root), **{**spec.loader_kwargs, **kwargs})
    if tuple(dataset.factor_names) != spec.factor_names or tuple(dataset.factor_sizes) != spec.factor_sizes:
        if not kwargs:  # test-only reduced grids legitimately differ
            raise RuntimeError(
                f"loader of {name} returned factors {dataset.factor_space}, spec says {spec.factor_sizes}"
            )
    dataset.name = name
    return dataset
