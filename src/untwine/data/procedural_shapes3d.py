"""Built-in 3D Shapes: a small ray-cast room with a floor, a wall and one object (no download).

The factor grid is that of 3D Shapes (Burgess & Kim 2018):

* floor_hue, wall_hue, object_hue: 10 hues each, ``linspace(0, 1, 10, endpoint=False)``;
* scale: 8 values ``linspace(0.75, 1.25, 8)`` (the object's size);
* shape: cube, cylinder, sphere, capsule;
* orientation: 15 values ``linspace(-30, 30, 15)`` degrees -- the room and the object turn together
  about the vertical axis through the object, as if the camera orbited it.

The scene: a floor (``y = 0``); two walls meeting in a vertical corner behind the object, so that the
orientation shows even for a sphere; the object standing on the floor at the origin.  One
directional light from the front-left-above, fixed to the camera, gives Lambertian shading
(``0.35 + 0.65 * max(0, n.l)``) and a hard shadow of the object.  Colours are fully saturated hues
times that shading, so the hue of every pixel inside one region is exactly the region's hue.

How it is fast
--------------
Geometry and colour are separable.  For each of the 480 (orientation, scale, shape) combinations the
renderer ray-casts 4x4 rays per pixel once and stores, per pixel and per region (floor, wall,
object), the shaded coverage ``w_r = mean over rays of [ray hits region r] * shade``.  An image is then
``sum_r w_r * rgb(hue_r)``: one small matrix product per image.  The 480 coverage maps take 24 MB
and 2-5 s to build on 2 cores (once per process; ``cache="disk"`` keeps them under
``$UNTWINE_DATA/procedural/``).  The build itself is cheap because an orientation fixes the rays and
the floor/wall hits, rays are culled against a bounding sphere before the exact shape test, and an
object only re-renders the pixels it covers or shadows.  ``cache="none"`` ray-casts the requested geometries on demand,
without keeping them, and gives identical images.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from untwine.data.base import FactorSpace, GroundTruthDataset
from untwine.data.paths import data_root
from untwine.utils.io import atomic_open

logger = logging.getLogger(__name__)

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
REGION_NAMES = ("floor", "wall", "object")

LATENT_VALUES = {
    "floor_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "wall_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "object_hue": np.linspace(0.0, 1.0, 10, endpoint=False),
    "scale": np.linspace(0.75, 1.25, 8),
    "shape": np.arange(4, dtype=np.float64),
    "orientation": np.linspace(-30.0, 30.0, 15),
}

FRAME = 64
RAYS_PER_AXIS = 4  # 4x4 rays per pixel
EYE = np.array([0.0, 2.0, -6.5])
TARGET = np.array([0.0, 0.8, 0.0])
FIELD_OF_VIEW = np.deg2rad(32.0)  # vertical = horizontal (square frame)
CORNER_DISTANCE = 4.5  # walls: z' + |x'| = CORNER_DISTANCE in the room frame
LIGHT = np.array([-0.5, 1.0, -0.7]) / np.linalg.norm([-0.5, 1.0, -0.7])  # towards the light, camera-fixed
AMBIENT = 0.35
_EPS = 1e-6
_CACHE_VERSION = 1  # bump when the rendering code changes: the cache file name follows it


def hue_to_rgb(hue) -> np.ndarray:
    """Fully saturated, full-value colours of hues in [0, 1): ``(..., 3)`` float32 (HSV with s = v = 1)."""
    h6 = 6.0 * np.asarray(hue, dtype=np.float64)[..., np.newaxis]
    rgb = np.stack(
        [np.abs(h6[..., 0] - 3.0) - 1.0, 2.0 - np.abs(h6[..., 0] - 2.0), 2.0 - np.abs(h6[..., 0] - 4.0)],
        axis=-1,
    )
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


# -- ray casting (room frame: x right, y up, z away from the camera at orientation 0) ---------------


def _camera_rays() -> np.ndarray:
    """Unit ray directions in world coordinates, ``(64 * 64 * R * R, 3)``, pixel-major (row, col, sub-ray)."""
    forward = (TARGET - EYE) / np.linalg.norm(TARGET - EYE)
    right = np.array([1.0, 0.0, 0.0])
    up = np.cross(forward, right)  # points up (positive y) for a camera looking slightly down
    half = np.tan(FIELD_OF_VIEW / 2)
    sub = (np.arange(RAYS_PER_AXIS) + 0.5) / RAYS_PER_AXIS
    coords = (np.arange(FRAME)[:, np.newaxis] + sub[np.newaxis, :]).ravel() / FRAME  # (64*R,) in (0, 1)
    # Row r of the image looks down as r grows; column c looks right as c grows.
    v = (1.0 - 2.0 * coords) * half
    u = (2.0 * coords - 1.0) * half
    # Order: pixel row, pixel column, sub-row, sub-column, so that a reshape groups each pixel's rays.
    v = v.reshape(FRAME, 1, RAYS_PER_AXIS, 1)
    u = u.reshape(1, FRAME, 1, RAYS_PER_AXIS)
    directions = forward + u[..., np.newaxis] * right + v[..., np.newaxis] * up
    directions = np.broadcast_to(directions, (FRAME, FRAME, RAYS_PER_AXIS, RAYS_PER_AXIS, 3)).reshape(-1, 3)
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _turn(vectors: np.ndarray, degrees: float) -> np.ndarray:
    """Express world vectors in the frame of a room turned by ``degrees`` about the vertical axis."""
    angle = np.deg2rad(degrees)
    c, s = np.cos(angle), np.sin(angle)
    # Inverse of the room's rotation (x, z) -> (c x + s z, -s x + c z).
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([c * x - s * z, y, s * x + c * z], axis=-1)


def _background(origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of the floor or a wall: distance, region (0 floor, 1 wall) and unit normal."""
    n = directions.shape[0]
    t = np.full(n, np.inf)
    region = np.zeros(n, dtype=np.int8)
    normal = np.zeros((n, 3))
    dy = directions[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dy < -_EPS, -origin[1] / dy, np.inf)
    t, normal[:] = t_floor, (0.0, 1.0, 0.0)
    # The room is the convex set z' + |x'| < D; the camera is inside, so each ray leaves it through
    # the wall plane it reaches first.
    for sign in (1.0, -1.0):  # wall sign*x' + z' = D, inward normal -(sign, 0, 1)/sqrt(2)
        speed = sign * directions[:, 0] + directions[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_wall = np.where(speed > _EPS, (CORNER_DISTANCE - sign * origin[0] - origin[2]) / speed, np.inf)
        closer = t_wall < t
        t = np.where(closer, t_wall, t)
        region[closer] = 1
        normal[closer] = np.array([-sign, 0.0, -1.0]) / np.sqrt(2.0)
    return t, region, normal


def _sphere(origins, directions, centre, radius):
    """Entry distance (inf on a miss) and outward normals of rays hitting a sphere from outside."""
    offset = origins - centre
    b = np.einsum("ij,ij->i", offset, directions)
    c = np.einsum("ij,ij->i", offset, offset) - radius * radius
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        t = -b - np.sqrt(disc)
    t = np.where((disc >= 0) & (t > _EPS), t, np.inf)
    hit = origins + np.where(np.isfinite(t), t, 0.0)[:, np.newaxis] * directions
    return t, (hit - centre) / radius


def _cube(origins, directions, half):
    """Slab test against the box |x|, |z| <= half, 0 <= y <= 2 half."""
    low = np.array([-half, 0.0, -half])
    high = np.array([half, 2 * half, half])
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t1, t2 = (low - origins) * inverse, (high - origins) * inverse
    t_near3 = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    t_far = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2)).min(axis=1)
    t_near = t_near3.max(axis=1)
    t = np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)
    axis = t_near3.argmax(axis=1)  # the slab entered last is the face hit
    normal = np.zeros_like(directions)
    normal[np.arange(len(axis)), axis] = -np.sign(directions[np.arange(len(axis)), axis])
    return t, normal


def _vertical_cylinder(origins, directions, radius, height):
    """Side and top cap of the cylinder x^2 + z^2 <= radius^2, 0 <= y <= height."""
    ox, oz, dx, dz = origins[:, 0], origins[:, 2], directions[:, 0], directions[:, 2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - radius * radius
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
    y_side = origins[:, 1] + t_side * directions[:, 1]
    t_side = np.where(
        (disc >= 0) & (a > _EPS) & (t_side > _EPS) & (y_side >= 0) & (y_side <= height), t_side, np.inf
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        t_top = np.where(directions[:, 1] < -_EPS, (height - origins[:, 1]) / directions[:, 1], np.inf)
    top = origins + np.where(np.isfinite(t_top), t_top, 0.0)[:, np.newaxis] * directions
    t_top = np.where((t_top > _EPS) & (top[:, 0] ** 2 + top[:, 2] ** 2 <= radius * radius), t_top, np.inf)
    t = np.minimum(t_side, t_top)
    hit = origins + np.where(np.isfinite(t), t, 0.0)[:, np.newaxis] * directions
    side_normal = np.stack([hit[:, 0], np.zeros(len(t)), hit[:, 2]], axis=1) / radius
    normal = np.where((t_top <= t_side)[:, np.newaxis], np.array([0.0, 1.0, 0.0]), side_normal)
    return t, normal


def _horizontal_capsule(origins, directions, radius, half_length):
    """A capsule lying on the floor along x': axis from (-L, r, 0) to (L, r, 0), radius r."""
    oy, oz, dy, dz = origins[:, 1] - radius, origins[:, 2], directions[:, 1], directions[:, 2]
    a = dy * dy + dz * dz
    b = oy * dy + oz * dz
    c = oy * oy + oz * oz - radius * radius
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_body = (-b - np.sqrt(disc)) / a
    x_body = origins[:, 0] + t_body * directions[:, 0]
    t_body = np.where(
        (disc >= 0) & (a > _EPS) & (t_body > _EPS) & (np.abs(x_body) <= half_length), t_body, np.inf
    )
    hit = origins + np.where(np.isfinite(t_body), t_body, 0.0)[:, np.newaxis] * directions
    normal = np.stack([np.zeros(len(t_body)), hit[:, 1] - radius, hit[:, 2]], axis=1) / radius
    t = t_body
    for end in (-half_length, half_length):
        t_end, n_end = _sphere(origins, directions, np.array([end, radius, 0.0]), radius)
        closer = t_end < t
        t = np.where(closer, t_end, t)
        normal[closer] = n_end[closer]
    return t, normal


def _object(shape: int, size: float, origins: np.ndarray, directions: np.ndarray):
    """Distance and normal of the object of the given shape and size (its height is ``size``)."""
    if shape == 0:
        return _cube(origins, directions, 0.5 * size)
    if shape == 1:
        return _vertical_cylinder(origins, directions, 0.5 * size, size)
    if shape == 2:
        return _sphere(origins, directions, np.array([0.0, 0.5 * size, 0.0]), 0.5 * size)
    return _horizontal_capsule(origins, directions, 0.35 * size, 0.45 * size)


class _Rays:
    """Many rays (one shared origin or one shared direction) to be traced against every object.

    A ray that misses the sphere of centre ``(0, size/2, 0)`` and radius ``0.9 size`` misses every
    shape of that size, and these spheres grow with the size, so the rays that pass through the
    largest one are found once per view; each object then tests only those (about a tenth).
    """

    def __init__(self, origins: np.ndarray, directions: np.ndarray):
        self.count = max(len(a) for a in (origins, directions) if a.ndim == 2)
        self.candidates = np.arange(self.count)
        self.origins = np.broadcast_to(origins, (self.count, 3))
        self.directions = np.broadcast_to(directions, (self.count, 3))
        self.candidates = np.flatnonzero(self._near(float(LATENT_VALUES["scale"].max())))
        self.origins = np.ascontiguousarray(self.origins[self.candidates])
        self.directions = np.ascontiguousarray(self.directions[self.candidates])

    def _near(self, size: float) -> np.ndarray:
        """Which candidate rays pass through the bounding sphere of objects of this size."""
        o, d = self.origins, self.directions
        height, radius = 0.5 * size, 0.9 * size
        offset_y = o[:, 1] - height
        b = o[:, 0] * d[:, 0] + offset_y * d[:, 1] + o[:, 2] * d[:, 2]
        c = o[:, 0] * o[:, 0] + offset_y * offset_y + o[:, 2] * o[:, 2] - radius * radius
        disc = b * b - c
        return (disc >= 0) & (np.sqrt(np.maximum(disc, 0.0)) > b + _EPS)

    def hit_object(self, shape: int, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rays that hit the object: their indices, distances and hit normals."""
        near = np.flatnonzero(self._near(size))
        t, normal = _object(shape, size, self.origins[near], self.directions[near])
        hit = np.isfinite(t)
        return self.candidates[near[hit]], t[hit], normal[hit]


class _View:
    """What one orientation fixes, whatever the object: rays, light, floor/wall hits and their picture.

    An object changes only the pixels it covers or shadows, so :meth:`render` starts from the empty
    room's coverage and recomputes just those pixels.
    """

    rays_per_pixel = RAYS_PER_AXIS * RAYS_PER_AXIS

    def __init__(self, orientation_index: int):
        orientation = float(LATENT_VALUES["orientation"][orientation_index])
        directions = _turn(_camera_rays(), orientation)
        eye = _turn(EYE, orientation)
        self.light = _turn(LIGHT, orientation)
        self.t_background, self.region, normal = _background(eye, directions)
        self.shade = AMBIENT + (1.0 - AMBIENT) * np.maximum(normal @ self.light, 0.0)
        self.camera_rays = _Rays(eye, directions)
        # Rays from every floor/wall point towards the light, for shadows.
        self.shadow_rays = _Rays(eye + self.t_background[:, np.newaxis] * directions, self.light)
        self.room = self._coverage(
            self.region.reshape(-1, self.rays_per_pixel), self.shade.reshape(-1, self.rays_per_pixel)
        )

    @staticmethod
    def _coverage(region: np.ndarray, shade: np.ndarray) -> np.ndarray:
        """Per-pixel mean of ``shade`` over the rays of each region: ``(pixels, rays)`` -> ``(pixels, 3)``."""
        return np.stack([np.where(region == r, shade, 0.0).mean(axis=1) for r in range(3)], axis=1).astype(
            np.float32
        )

    def render(self, scale_index: int, shape: int) -> np.ndarray:
        """Shaded coverage of floor, wall and object per pixel: float32 ``(64 * 64, 3)``."""
        size = float(LATENT_VALUES["scale"][scale_index])
        on_object, t_object, normal = self.camera_rays.hit_object(shape, size)
        in_front = t_object < self.t_background[on_object]
        on_object, normal = on_object[in_front], normal[in_front]
        # Hard shadow: a floor/wall point whose ray towards the light meets the object gets ambient only.
        in_shadow = self.shadow_rays.hit_object(shape, size)[0]
        per_pixel = self.rays_per_pixel
        pixels = np.unique(np.concatenate([on_object, in_shadow]) // per_pixel)
        rays = pixels[:, np.newaxis] * per_pixel + np.arange(per_pixel)
        region, shade = self.region[rays], self.shade[rays]  # copies, (len(pixels), per_pixel)
        shadow_at = (np.searchsorted(pixels, in_shadow // per_pixel), in_shadow % per_pixel)
        shade[shadow_at] = AMBIENT
        object_at = (np.searchsorted(pixels, on_object // per_pixel), on_object % per_pixel)
        region[object_at] = 2  # after the shadow: where the object is seen, its own shading counts
        shade[object_at] = AMBIENT + (1.0 - AMBIENT) * np.maximum(normal @ self.light, 0.0)
        coverage = self.room.copy()
        coverage[pixels] = self._coverage(region, shade)
        return coverage


@functools.lru_cache(maxsize=1)
def _view(orientation_index: int) -> _View:
    return _View(orientation_index)


def render_geometry(scale_index: int, shape: int, orientation_index: int) -> np.ndarray:
    """Shaded coverage of floor, wall and object per pixel for one geometry: float32 ``(64 * 64, 3)``."""
    return _view(orientation_index).render(scale_index, shape)


@functools.lru_cache(maxsize=1)
def build_geometry() -> np.ndarray:
    """All 480 coverage maps: float32 ``(8 scales, 4 shapes, 15 orientations, 64 * 64, 3)``, read-only."""
    geometry = np.empty((*FACTOR_SIZES[3:], FRAME * FRAME, 3), dtype=np.float32)
    for orientation in range(FACTOR_SIZES[5]):
        view = _View(orientation)
        for scale in range(FACTOR_SIZES[3]):
            for shape in range(FACTOR_SIZES[4]):
                geometry[scale, shape, orientation] = view.render(scale, shape)
    geometry.flags.writeable = False
    return geometry


def _cache_key() -> str:
    text = repr(
        (
            _CACHE_VERSION,
            FRAME,
            RAYS_PER_AXIS,
            EYE.tolist(),
            TARGET.tolist(),
            FIELD_OF_VIEW,
            CORNER_DISTANCE,
            LIGHT.tolist(),
            AMBIENT,
            FACTOR_SIZES,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(root: str | os.PathLike | None = None) -> Path:
    base = Path(root).expanduser() if root is not None else data_root()
    return base / "procedural" / f"shapes3d_geometry_{_cache_key()}.npy"


def load_or_build_geometry(root: str | os.PathLike | None = None) -> np.ndarray:
    """Read the coverage maps from disk, or build them and write them atomically."""
    path = cache_path(root)
    expected = (*FACTOR_SIZES[3:], FRAME * FRAME, 3)
    if path.exists():
        try:
            geometry = np.load(path, allow_pickle=False)
            if geometry.shape == expected and geometry.dtype == np.float32:
                geometry.flags.writeable = False
                return geometry
            logger.warning("ignoring %s: shape %s, expected %s", path, geometry.shape, expected)
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable cache %s: %s", path, error)
    geometry = build_geometry()
    buffer = io.BytesIO()
    np.save(buffer, geometry, allow_pickle=False)
    try:
        with atomic_open(path, "wb") as handle:
            handle.write(buffer.getvalue())
    except OSError as error:
        logger.warning("could not write the shapes3d cache %s: %s", path, error)
    return geometry


class ProceduralShapes3D(GroundTruthDataset):
    """The procedural 3D Shapes scene, 64x64 RGB, deterministic (see the module docstring).

    ``cache``: ``"memory"`` (build the 480 coverage maps once per process, a few seconds), ``"disk"``
    (load them from / write them to ``$UNTWINE_DATA/procedural``, or ``cache_root/procedural``) or
    ``"none"`` (ray-cast each requested geometry, about 10 ms per distinct one in a batch).
    """

    name = "procedural_shapes3d"
    observation_shape = (FRAME, FRAME, 3)
    latent_values = LATENT_VALUES
    shape_names = SHAPE_NAMES

    def __init__(
        self, cache: Literal["memory", "disk", "none"] = "memory", cache_root: str | os.PathLike | None = None
    ):
        self.factor_space = FactorSpace(FACTOR_SIZES, FACTOR_NAMES)
        if cache == "disk":
            self.geometry: np.ndarray | None = load_or_build_geometry(cache_root)
        elif cache == "memory":
            self.geometry = build_geometry()
        elif cache == "none":
            self.geometry = None
        else:
            raise ValueError(f"cache must be 'memory', 'disk' or 'none', got {cache!r}")
        self.cache = cache
        self._palette = hue_to_rgb(LATENT_VALUES["floor_hue"])  # the three hue factors share values

    def coverage(self, factors: np.ndarray) -> np.ndarray:
        """Shaded region coverage for validated factors: float32 ``(n, 64 * 64, 3)``."""
        scale, shape, orientation = factors[:, 3], factors[:, 4], factors[:, 5]
        if self.geometry is not None:
            return self.geometry[scale, shape, orientation]
        out = np.empty((factors.shape[0], FRAME * FRAME, 3), dtype=np.float32)
        # Orientation first, so that consecutive geometries share one view (floor/wall hits).
        keys = factors[:, [5, 3, 4]]
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        for j, (orientation, scale, shape) in enumerate(unique.tolist()):
            out[inverse.ravel() == j] = render_geometry(scale, shape, orientation)
        return out

    def _observations(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        colours = self._palette[factors[:, :3]]  # (n, region, rgb)
        images = np.matmul(self.coverage(factors), colours)
        return images.reshape(factors.shape[0], FRAME, FRAME, 3)


def load_procedural_shapes3d(
    data_dir: Path | None = None,
    cache: Literal["memory", "disk", "none"] = "memory",
    cache_root: str | os.PathLike | None = None,
) -> ProceduralShapes3D:
    """Procedural 3D Shapes (``data_dir`` is unused: nothing is read but the optional cache)."""
    del data_dir
    return ProceduralShapes3D(cache=cache, cache_root=cache_root)
