"""Render indoor rooms with exact depth and write them in the layout of NYU Depth v2's labeled .mat file.

A scene is a box-shaped room (floor, ceiling, four walls) with box-like furniture standing on the floor, seen
by a camera with the NYU Kinect intrinsics. Rendering casts one ray per pixel (vectorised float32 numpy):

- depth is the z-distance along the optical axis in metres (the NYU convention, not the ray length), at most
  `MAX_DEPTH`; every ray is written as (x, y, 1) in camera space, so its hit parameter t *is* that depth;
- colour is a procedural texture in surface coordinates (tiles, planks, stripes, blotches, fine grain) times
  Lambertian shading from a point light with distance falloff plus ambient, then exposure, gamma and noise;
- raw depth is depth with Kinect-like holes (0): the projector's parallax shadow left of near objects, mixed
  pixels at depth edges, grazing surfaces, dark absorbent patches, and everything beyond `RAW_MAX_RANGE`.

World frame: x and z horizontal, y up; the room spans [0, width] x [0, height] x [0, length]. Camera frame:
x right, y down, z forward. A camera with yaw 0 and pitch 0 looks along +z with +x to the right of the image;
positive pitch looks down. Pixel (row, col) has the NYU toolbox's 1-based coordinates (col + 1, row + 1).

Image i of a file depends only on (seed, i), only arithmetic, sqrt and floor touch the images, and HDF5 writes
no timestamps: the same seed gives the same bytes, and the first k images do not depend on `num_images`.
"""

from __future__ import annotations

import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from depthcore.files import atomic_path

HEIGHT, WIDTH = 480, 640  # NYU frame
FX, FY, CX, CY = 518.8579, 519.4696, 325.5824, 253.7362  # NYU Kinect RGB intrinsics, pixels
MAX_DEPTH = 10.0  # m: no rendered depth is larger
RAW_MAX_RANGE = 8.0  # m: the simulated sensor returns nothing beyond this
CAMERA_CLEARANCE = 0.6  # m: the camera keeps at least this far (horizontally) from the walls
FURNITURE_CLEARANCE = 1.0  # m: and at least this far (horizontally) from every piece of furniture
MATLAB_HEADER_TEXT = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Jan  1 00:00:00 2000 HDF5 schema 1.00 ."
USERBLOCK_SIZE = 512  # the MATLAB header lives in the HDF5 user block
_DEFLATE_LEVEL = 1  # fastest zlib level: depth compresses well even at 1

ROOM_SURFACES = ("floor", "ceiling", "wall x=0", "wall x=width", "wall z=0", "wall z=length")
_ROOM_NORMALS = np.array([[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], np.float32)
_ROOM_UV_AXES = ((0, 2), (0, 2), (2, 1), (2, 1), (0, 1), (0, 1))  # world axes (u, v) of each room surface
PATTERNS = ("plain", "checker", "planks", "stripes")

_AMBIENT = 0.2  # irradiance every surface gets, relative to the light's near-field direct term
_LIGHT_FALLOFF = 2.5  # m: direct light halves at this distance (1 / (1 + d^2 / r^2))
_SHADOW_BIAS = 1e-3  # shadow rays start this fraction of the way to the light: no self-shadowing
_SHADOW_MARGIN = 0.01  # m: footprints grow by this much when choosing the points a box may shade
_EXPOSURE_PERCENTILE = 0.98  # this brightness quantile maps to _EXPOSURE_WHITE before gamma
_EXPOSURE_WHITE = 0.85  # linear value (of 1) that quantile gets
_NOISE_AMPLITUDE = 2.5  # image noise, uniform in +-this many uint8 levels
_GRAIN = 0.08  # relative albedo variation of the fine grain on every surface
_GRAIN_SCALE = 0.015  # m
_KINECT_BASELINE = 0.075  # m, projector to IR camera: sets the width of the parallax shadow
_KINECT_SHADOW_MAX = 40  # px
_EDGE_JUMP = 0.05  # relative depth step between neighbours that counts as a discontinuity
_GRAZING_COS = 0.12  # |cos| of the incidence angle below which the sensor sees nothing
_ABSORBENT_HOLE_FRACTION = 0.6  # share of an absorbent surface's 10 cm cells without a reading


@dataclass(frozen=True)
class Material:
    """A procedural albedo: `color_a` and `color_b` (RGB in [0, 1]) mixed by `pattern` of period `scale` (m).

    `salt` varies the per-cell randomness; `absorbent` surfaces (dark, glossy) lose patches of raw depth.
    """

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    pattern: str
    scale: float
    salt: int
    absorbent: bool = False

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"expected a pattern in {PATTERNS}, got {self.pattern!r}")
        if not self.scale > 0:
            raise ValueError(f"expected a pattern scale > 0 (m), got {self.scale!r}")


@dataclass(frozen=True)
class Box:
    """Furniture: a box standing on the floor, centred at (x, z), sizes along its own axes, turned by yaw (rad)."""

    x: float
    z: float
    size_x: float
    size_y: float
    size_z: float
    yaw: float
    material: Material


@dataclass(frozen=True)
class Camera:
    """Camera position (m, `height` is y) and orientation (rad): yaw about the vertical, pitch > 0 looks down."""

    x: float
    height: float
    z: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class Scene:
    """A room [0, width] x [0, height] x [0, length] (m), its six surface materials in `ROOM_SURFACES` order,
    furniture, a point light at `light` (x, y, z), and the seed of the image noise."""

    width: float
    length: float
    height: float
    room_materials: tuple[Material, ...]
    boxes: tuple[Box, ...]
    camera: Camera
    light: tuple[float, float, float]
    light_power: float
    noise_seed: int


# ----------------------------------------------------------------------------------------------- scenes


def random_scene(rng: np.random.Generator) -> Scene:
    """Draw a room, its furniture, light and camera from `rng` (every depth within `MAX_DEPTH`)."""
    height = float(rng.uniform(2.4, 3.0))
    width, length = float(rng.uniform(2.8, 7.5)), float(rng.uniform(2.8, 7.5))
    # the room diagonal bounds every depth; shrink the floor plan until it fits
    shrink = min(1.0, math.sqrt((0.99 * MAX_DEPTH) ** 2 - height**2) / math.hypot(width, length))
    width, length = width * shrink, length * shrink
    camera = _random_camera(rng, width, length, height)
    boxes = _random_furniture(rng, width, length, height, camera)
    light = (
        float(rng.uniform(0.2, 0.8)) * width,
        height - float(rng.uniform(0.2, 0.6)),
        float(rng.uniform(0.2, 0.8)) * length,
    )
    return Scene(
        width=width,
        length=length,
        height=height,
        room_materials=_random_room_materials(rng),
        boxes=boxes,
        camera=camera,
        light=light,
        light_power=float(rng.uniform(0.8, 1.6)),
        noise_seed=int(rng.integers(2**32)),
    )


def _random_camera(rng: np.random.Generator, width: float, length: float, height: float) -> Camera:
    """A camera at hand height, at least `CAMERA_CLEARANCE` from the walls, looking roughly into the room."""
    x = float(rng.uniform(CAMERA_CLEARANCE, width - CAMERA_CLEARANCE))
    z = float(rng.uniform(CAMERA_CLEARANCE, length - CAMERA_CLEARANCE))
    to_centre = math.atan2(width / 2 - x, length / 2 - z)
    return Camera(
        x=x,
        height=float(rng.uniform(1.0, min(1.8, height - CAMERA_CLEARANCE))),
        z=z,
        yaw=to_centre + float(rng.uniform(-0.8, 0.8)),
        pitch=float(rng.uniform(-0.05, 0.35)),
    )


def _random_furniture(
    rng: np.random.Generator, width: float, length: float, height: float, camera: Camera
) -> tuple[Box, ...]:
    """3 to 7 boxes inside the room, none within `FURNITURE_CLEARANCE` of the camera (horizontally)."""
    boxes: list[Box] = []
    wanted = int(rng.integers(3, 8))
    for _ in range(40 * wanted):
        if len(boxes) == wanted:
            break
        box = _random_box(rng, width, length, height)
        if box is not None and _footprint_distance(box, camera.x, camera.z) >= FURNITURE_CLEARANCE:
            boxes.append(box)
    return tuple(boxes)


def _random_box(rng: np.random.Generator, width: float, length: float, height: float) -> Box | None:
    """One piece of furniture inside the room, often aligned with and pushed against a wall; None if too big."""
    size_x, size_z = float(rng.uniform(0.4, 2.0)), float(rng.uniform(0.35, 1.0))
    size_y = float(rng.uniform(0.3, min(2.1, height - 0.3)))
    aligned = rng.random() < 0.7
    yaw = float(rng.integers(4)) * math.pi / 2 if aligned else float(rng.uniform(0, math.pi))
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    half_x, half_z = c * size_x / 2 + s * size_z / 2, s * size_x / 2 + c * size_z / 2  # world footprint
    if 2 * half_x + 0.05 > width or 2 * half_z + 0.05 > length:
        return None
    x = float(rng.uniform(half_x + 0.02, width - half_x - 0.02))
    z = float(rng.uniform(half_z + 0.02, length - half_z - 0.02))
    if aligned and rng.random() < 0.6:  # against a wall
        side = int(rng.integers(4))
        x = (half_x + 0.01, width - half_x - 0.01, x, x)[side]
        z = (z, z, half_z + 0.01, length - half_z - 0.01)[side]
    return Box(x, z, size_x, size_y, size_z, yaw, _random_material(rng, furniture=True))


def _footprint_distance(box: Box, x: float, z: float) -> float:
    """Horizontal distance (m) from the point (x, z) to the box's footprint (0 inside)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    local_x = c * (x - box.x) + s * (z - box.z)
    local_z = -s * (x - box.x) + c * (z - box.z)
    return math.hypot(max(abs(local_x) - box.size_x / 2, 0.0), max(abs(local_z) - box.size_z / 2, 0.0))


def _random_room_materials(rng: np.random.Generator) -> tuple[Material, ...]:
    """Floor, ceiling and four walls; the walls usually share one material, sometimes with an accent wall."""
    wood = np.array([0.55, 0.38, 0.22]) * rng.uniform(0.6, 1.3)
    floor_base = wood if rng.random() < 0.6 else np.full(3, rng.uniform(0.3, 0.7))
    floor = _material(rng, floor_base, rng.choice(["planks", "checker", "plain"]), float(rng.uniform(0.12, 0.6)))
    ceiling = _material(rng, np.full(3, rng.uniform(0.75, 0.95)), "plain", 1.0)
    wall = _random_material(rng, furniture=False)
    walls = [wall] * 4
    if rng.random() < 0.3:
        walls[int(rng.integers(4))] = _random_material(rng, furniture=False)
    return (floor, ceiling, *walls)


def _random_material(rng: np.random.Generator, furniture: bool) -> Material:
    """Walls: light, plain or striped. Furniture: any colour and pattern; some dark and absorbent."""
    if not furniture:
        base = rng.uniform(0.55, 0.9) + rng.uniform(-0.08, 0.08, 3)
        return _material(rng, base, rng.choice(["plain", "plain", "stripes"]), float(rng.uniform(0.05, 0.4)))
    if rng.random() < 0.15:
        return _material(rng, rng.uniform(0.03, 0.1, 3), "plain", 0.5, absorbent=True)
    return _material(rng, rng.uniform(0.15, 0.9, 3), rng.choice(PATTERNS), float(rng.uniform(0.05, 0.5)))


def _material(
    rng: np.random.Generator, base: np.ndarray, pattern: str, scale: float, absorbent: bool = False
) -> Material:
    """`base` as colour a, a darker or lighter variant of it as colour b."""
    color_a = np.clip(base, 0.0, 1.0)
    color_b = np.clip(color_a * rng.uniform(0.55, 1.35) + rng.uniform(-0.06, 0.06, 3), 0.0, 1.0)
    return Material(
        color_a=tuple(float(c) for c in color_a),
        color_b=tuple(float(c) for c in color_b),
        pattern=str(pattern),
        scale=scale,
        salt=int(rng.integers(2**31)),
        absorbent=absorbent,
    )


# ------------------------------------------------------------------------------------------- rendering


def render_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast `scene`: rgb (480, 640, 3) uint8, depth (480, 640) float32 m, raw depth (480, 640) float32 m.

    Raw depth equals depth except where the simulated Kinect has no reading (0). The camera must be inside
    the room; keeping it clear of the furniture is up to the caller (`random_scene` does).
    """
    cam = scene.camera
    if not (0 < cam.x < scene.width and 0 < cam.height < scene.height and 0 < cam.z < scene.length):
        raise ValueError(
            f"expected the camera inside the {scene.width} x {scene.height} x {scene.length} m room, "
            f"got it at ({cam.x}, {cam.height}, {cam.z})"
        )
    origin = np.array([scene.camera.x, scene.camera.height, scene.camera.z], np.float32)
    rays = _camera_rays(scene.camera)  # (3, P) world directions, unit length along the optical axis
    t, obj = _cast(scene, origin, rays)  # (P,) z-depth and object id (room surface index, then 6 + box index)
    points = origin[:, None] + t * rays  # (3, P)
    normals, albedo, absorbent_holes = _surfaces(scene, points, obj)  # (3, P), (3, P), (P,)
    rgb = _shade(scene, points, normals, albedo)  # (3, P) uint8
    depth = np.minimum(t, MAX_DEPTH).reshape(HEIGHT, WIDTH)
    facing = np.abs(np.sum(normals * rays, axis=0)) / np.sqrt(np.sum(rays * rays, axis=0))  # (P,) |cos|
    holes = absorbent_holes | (facing < _GRAZING_COS)
    raw = _raw_depth(depth, holes.reshape(HEIGHT, WIDTH))
    return rgb.reshape(3, HEIGHT, WIDTH).transpose(1, 2, 0), depth, raw


@lru_cache(maxsize=1)
def _pixel_grid() -> tuple[np.ndarray, np.ndarray]:
    """Camera-space ray slopes (x / z, y / z) of every pixel, each (P,) float32, row-major."""
    cols = (np.arange(WIDTH, dtype=np.float64) + 1 - CX) / FX  # NYU toolbox: 1-based pixel coordinates
    rows = (np.arange(HEIGHT, dtype=np.float64) + 1 - CY) / FY
    slope_x = np.broadcast_to(cols[None, :], (HEIGHT, WIDTH)).ravel().astype(np.float32)
    slope_y = np.broadcast_to(rows[:, None], (HEIGHT, WIDTH)).ravel().astype(np.float32)
    return slope_x, slope_y


def _camera_basis(camera: Camera) -> np.ndarray:
    """(3, 3) float32: rows are the camera's right, down and forward unit vectors in world coordinates."""
    cy, sy = math.cos(camera.yaw), math.sin(camera.yaw)
    cp, sp = math.cos(camera.pitch), math.sin(camera.pitch)
    right = (cy, 0.0, -sy)
    down = (-sy * sp, -cp, -cy * sp)  # right x forward
    forward = (sy * cp, -sp, cy * cp)
    return np.array([right, down, forward], np.float32)


def _camera_rays(camera: Camera) -> np.ndarray:
    """(3, P) float32 world directions of the pixel rays, each with component 1 along the optical axis."""
    right, down, forward = _camera_basis(camera)
    slope_x, slope_y = _pixel_grid()
    return right[:, None] * slope_x + down[:, None] * slope_y + forward[:, None]


def _cast(scene: Scene, origin: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of each ray (3, P): t (P,) float32 and object id (P,) int16."""
    with np.errstate(divide="ignore"):
        inv = 1.0 / rays  # (3, P); +-inf for axis-parallel rays, which the slab tests handle
    # inside the room every ray leaves through exactly one surface: the nearest of the three exits
    hi = (scene.width, scene.height, scene.length)
    exits = [np.maximum(-origin[a] * inv[a], (hi[a] - origin[a]) * inv[a]) for a in range(3)]
    t = np.minimum(np.minimum(exits[0], exits[1]), exits[2])
    x_wall = np.where(rays[0] < 0, 2, 3)
    z_wall = np.where(rays[2] < 0, 4, 5)
    obj = np.where(t == exits[1], np.where(rays[1] < 0, 0, 1), np.where(t == exits[0], x_wall, z_wall))
    obj = obj.astype(np.int16)
    # boxes: slab tests on the pixel window each one covers, on (H, W) views of the flat arrays
    image_t, image_obj = t.reshape(HEIGHT, WIDTH), obj.reshape(HEIGHT, WIDTH)
    image_rays, image_inv_y = rays.reshape(3, HEIGHT, WIDTH), inv[1].reshape(HEIGHT, WIDTH)
    for k, box in enumerate(scene.boxes):
        window = _box_window(box, scene.camera, origin)
        if window is None:
            continue
        entry = _box_entry(box, origin, image_rays[(slice(None), *window)], image_inv_y[window])
        hit = entry < image_t[window]
        image_t[window] = np.where(hit, entry, image_t[window])
        image_obj[window][hit] = len(ROOM_SURFACES) + k
    return t, obj


def _box_window(box: Box, camera: Camera, origin: np.ndarray) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the pixels whose rays may hit `box`; None if it is wholly behind the camera.

    The projection of a convex box lies inside the bounding rectangle of its projected corners, provided all
    corners are in front of the camera; otherwise the whole image is searched.
    """
    basis = _camera_basis(camera).astype(np.float64)
    cols, rows, in_front, behind = [], [], True, True
    for x, z in _footprint(box):
        for y in (0.0, box.size_y):
            right, down, forward = (float(b @ (np.array([x, y, z]) - origin)) for b in basis)
            in_front &= forward > 1e-3
            behind &= forward <= 0
            if forward > 1e-3:
                cols.append(FX * right / forward + CX - 1)  # 0-based pixel coordinates
                rows.append(FY * down / forward + CY - 1)
    if behind:
        return None
    if not in_front:
        return slice(None), slice(None)
    row0, row1 = max(0, math.floor(min(rows)) - 1), min(HEIGHT, math.ceil(max(rows)) + 2)
    col0, col1 = max(0, math.floor(min(cols)) - 1), min(WIDTH, math.ceil(max(cols)) + 2)
    if row0 >= row1 or col0 >= col1:
        return None
    return slice(row0, row1), slice(col0, col1)


def _footprint(box: Box, margin: float = 0.0) -> list[tuple[float, float]]:
    """The (x, z) corners of the box's footprint grown by `margin` (m), in order around it."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    half_x, half_z = box.size_x / 2 + margin, box.size_z / 2 + margin
    local = ((-half_x, -half_z), (half_x, -half_z), (half_x, half_z), (-half_x, half_z))
    return [(box.x + c * lx - s * lz, box.z + s * lx + c * lz) for lx, lz in local]


def _box_entry(box: Box, origin: np.ndarray, rays: np.ndarray, inv_y: np.ndarray) -> np.ndarray:
    """Parameter t at which each ray origin + t * rays enters `box` (slab test in its frame), inf on a miss.

    `rays` (3, ...); `origin` (3,) or (3, ...) like `rays`; `inv_y` is 1 / rays[1]. Returns rays[0]'s shape.
    """
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    dx, dz = origin[0] - box.x, origin[2] - box.z
    origin_x, origin_z = c * dx + s * dz, -s * dx + c * dz
    with np.errstate(divide="ignore"):
        inv_x = 1.0 / (c * rays[0] + s * rays[2])
        inv_z = 1.0 / (-s * rays[0] + c * rays[2])
    near, far = _slab(-box.size_x / 2 - origin_x, box.size_x / 2 - origin_x, inv_x)
    near_z, far_z = _slab(-box.size_z / 2 - origin_z, box.size_z / 2 - origin_z, inv_z)
    near_y, far_y = _slab(-origin[1], box.size_y - origin[1], inv_y)
    near = np.maximum(np.maximum(near, near_z), near_y)
    far = np.minimum(np.minimum(far, far_z), far_y)
    return np.where((near <= far) & (near > 0), near, np.float32(np.inf))


def _slab(low: np.ndarray | float, high: np.ndarray | float, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit t of the slab low <= t * d <= high along one axis, given inv = 1 / d (any shape)."""
    t_low, t_high = low * inv, high * inv
    return np.minimum(t_low, t_high), np.maximum(t_low, t_high)


def _surfaces(scene: Scene, points: np.ndarray, obj: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: unit normal (3, P), albedo (3, P) float32 and absorbent-patch holes (P,) bool.

    Works on the pixels sorted by object, so each object's pixels are one contiguous slice.
    """
    order = np.argsort(obj, kind="stable")
    p_sorted = np.take(points, order, axis=1)  # (3, P)
    normals, albedo = np.empty_like(p_sorted), np.empty_like(p_sorted)
    holes = np.zeros(obj.shape, bool)
    bounds = np.cumsum(np.bincount(obj, minlength=len(ROOM_SURFACES) + len(scene.boxes)))
    for k, end in enumerate(bounds):
        pixels = slice(bounds[k - 1] if k else 0, end)
        p = p_sorted[:, pixels]  # (3, n)
        if k < len(ROOM_SURFACES):
            material = scene.room_materials[k]
            normals[:, pixels] = _ROOM_NORMALS[k][:, None]
            u, v = p[_ROOM_UV_AXES[k][0]], p[_ROOM_UV_AXES[k][1]]
        else:
            box = scene.boxes[k - len(ROOM_SURFACES)]
            material = box.material
            normals[:, pixels], u, v = _box_faces(box, p)
        albedo[:, pixels] = _texture(material, u, v)
        if material.absorbent:
            holes[pixels] = _cell_noise(u, v, 0.1, material.salt + 1) < _ABSORBENT_HOLE_FRACTION
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)
    return np.take(normals, unsort, axis=1), np.take(albedo, unsort, axis=1), holes[unsort]


def _box_faces(box: Box, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For points p (3, n) on `box`: world normals (3, n) and texture coordinates u, v (n,) of their faces."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    dx, dz = p[0] - box.x, p[2] - box.z
    local_x, local_z = c * dx + s * dz, -s * dx + c * dz
    # the face a point lies on is the one it is closest to (the other two distances are negative)
    gap_x = np.abs(local_x) - box.size_x / 2
    gap_z = np.abs(local_z) - box.size_z / 2
    gap_top = p[1] - box.size_y
    on_x = (gap_x >= gap_z) & (gap_x >= gap_top)
    on_z = ~on_x & (gap_z >= gap_top)
    sign_x, sign_z = np.sign(local_x), np.sign(local_z)
    normals = np.zeros_like(p)
    normals[0] = np.where(on_x, sign_x * c, np.where(on_z, -sign_z * s, 0))
    normals[1] = np.where(on_x | on_z, 0, 1)
    normals[2] = np.where(on_x, sign_x * s, np.where(on_z, sign_z * c, 0))
    u = np.where(on_x, local_z, local_x)
    v = np.where(on_x | on_z, p[1], local_z)
    return normals, u, v


def _texture(material: Material, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (3, n) float32 of `material` at surface coordinates u, v (n,) in metres."""
    scale, salt = material.scale, material.salt
    if material.pattern == "checker":  # tiles with grout lines and a little variation per tile
        fu, fv = u / scale, v / scale
        iu, iv = np.floor(fu), np.floor(fv)
        parity = (iu.astype(np.int32) + iv.astype(np.int32)) & 1
        mix = parity * np.float32(0.8) + 0.2 * _hash(iu, iv, salt)
        mix[(fu - iu < 0.03) | (fv - iv < 0.03)] = 0.5  # grout
    elif material.pattern == "planks":  # rows of boards `scale` wide and 5 * scale long, staggered
        row = np.floor(v / scale)
        board = np.floor((u + row * (1.7 * scale)) / (5 * scale))
        mix = np.where(v / scale - row < 0.05, 0.0, _hash(board, row, salt))
    elif material.pattern == "stripes":
        mix = np.floor(u / scale) % 2
    else:  # plain: large soft blotches
        mix = 0.35 * _cell_noise(u, v, scale, salt)
    grain = 1 + _GRAIN * (_cell_noise(u, v, _GRAIN_SCALE, salt + 2) - 0.5)
    a = np.asarray(material.color_a, np.float32)[:, None]
    b = np.asarray(material.color_b, np.float32)[:, None]
    return (a + (b - a) * mix.astype(np.float32)) * grain.astype(np.float32)


def _cell_noise(u: np.ndarray, v: np.ndarray, cell: float, salt: int) -> np.ndarray:
    """A pseudo-random value in [0, 1) per `cell`-sized square of the (u, v) plane, (n,) float32."""
    return _hash(np.floor(u / cell), np.floor(v / cell), salt)


def _hash(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """A pseudo-random value in [0, 1) per pair of integer-valued floats (i, j), (n,) float32."""
    iu = i.astype(np.int32).view(np.uint32)
    iv = j.astype(np.int32).view(np.uint32)
    h = iu * np.uint32(73856093) ^ iv * np.uint32(19349663) ^ np.uint32(salt & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFF)).astype(np.float32) / np.float32(65536)


def _shade(scene: Scene, points: np.ndarray, normals: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Lambertian shading, exposure, gamma 2 and noise: (3, P) uint8."""
    to_light = np.asarray(scene.light, np.float32)[:, None] - points  # (3, P)
    dist2 = np.sum(to_light * to_light, axis=0)
    cos_in = np.maximum(np.sum(normals * to_light, axis=0) / np.sqrt(dist2), 0)
    cos_in[_in_shadow(scene, points, to_light)] = 0
    irradiance = _AMBIENT + scene.light_power * cos_in / (1 + dist2 / _LIGHT_FALLOFF**2)
    radiance = albedo * irradiance  # (3, P)
    luminance = radiance.mean(axis=0)[::7]
    k = int(_EXPOSURE_PERCENTILE * (luminance.size - 1))
    gain = np.float32(_EXPOSURE_WHITE) / np.partition(luminance, k)[k]
    value = np.sqrt(np.clip(radiance * gain, 0, 1)) * np.float32(255)
    noise = np.random.default_rng(scene.noise_seed).integers(0, 256, value.shape, np.uint8)
    value += noise * np.float32(2 * _NOISE_AMPLITUDE / 255) - np.float32(_NOISE_AMPLITUDE)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def _in_shadow(scene: Scene, points: np.ndarray, to_light: np.ndarray) -> np.ndarray:
    """(P,) bool: points (3, P) whose segment to the light, points + t * to_light for t in (0, 1), hits a box."""
    shadow = np.zeros(points.shape[1], bool)
    with np.errstate(divide="ignore"):
        inv_y = 1.0 / to_light[1]
    for box in scene.boxes:
        idx = _shadow_candidates(box, scene.light, to_light)
        entry = _box_entry(box, np.take(points, idx, axis=1), np.take(to_light, idx, axis=1), inv_y[idx])
        shadow[idx] |= (entry > _SHADOW_BIAS) & (entry < 1)
    return shadow


def _shadow_candidates(box: Box, light: tuple[float, float, float], to_light: np.ndarray) -> np.ndarray:
    """Indices of the points (given by to_light (3, P) = light - point) that `box` may shade: seen from the
    light, horizontally within the angle its footprint spans and, if the light is above it, below its top."""
    lx, ly, lz = light
    if _footprint_distance(box, lx, lz) < 2 * _SHADOW_MARGIN:  # the light is above the (grown) footprint
        return np.arange(to_light.shape[1])
    corners = [(x - lx, z - lz) for x, z in _footprint(box, _SHADOW_MARGIN)]

    def cross(a: tuple[float, float], b: tuple[float, float]) -> float:
        return a[0] * b[1] - a[1] * b[0]

    # the light is outside the convex footprint: it spans less than 180 degrees, between two extreme corners
    first = next(a for a in corners if all(cross(a, b) >= 0 for b in corners))
    last = next(a for a in corners if all(cross(b, a) >= 0 for b in corners))
    away_x, away_z = -to_light[0], -to_light[2]  # from the light to the point
    inside = (first[0] * away_z - first[1] * away_x >= 0) & (away_x * last[1] - away_z * last[0] >= 0)
    if ly > box.size_y:
        inside &= to_light[1] > ly - box.size_y
    return np.flatnonzero(inside)


def _raw_depth(depth: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Depth (H, W) with Kinect-like holes set to 0: `holes` (H, W), depth edges, parallax shadow, far range."""
    missing = holes | (depth > RAW_MAX_RANGE) | _edge_pixels(depth) | _parallax_shadow(depth)
    return np.where(missing, np.float32(0), depth)


def _edge_pixels(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: both pixels of every neighbour pair (across rows or columns) with a depth step."""
    edges = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        a, b = np.moveaxis(depth, axis, 0)[:-1], np.moveaxis(depth, axis, 0)[1:]
        step = np.abs(a - b) > _EDGE_JUMP * np.minimum(a, b)
        view = np.moveaxis(edges, axis, 0)
        view[:-1] |= step
        view[1:] |= step
    return edges


def _parallax_shadow(depth: np.ndarray) -> np.ndarray:
    """(H, W) bool: far pixels left of a nearer surface that the projector, offset to the right, cannot see.

    At a step from far (column c) to near (c + 1) the shadow covers columns (c - w, c], w = f b (1/near - 1/far).
    """
    far, near = depth[:, :-1], depth[:, 1:]
    width = np.minimum(FX * _KINECT_BASELINE * (1 / near - 1 / far), _KINECT_SHADOW_MAX)
    step = far - near > _EDGE_JUMP * near
    cols = np.arange(WIDTH - 1, dtype=np.float32)
    reach = np.where(step, cols - width, np.float32(np.inf))  # leftmost column each step shadows, exclusive
    # column j is shadowed when some step at c >= j reaches past it
    nearest_reach = np.minimum.accumulate(reach[:, ::-1], axis=1)[:, ::-1]
    shadow = np.zeros(depth.shape, bool)
    shadow[:, :-1] = nearest_reach < cols
    return shadow


# -------------------------------------------------------------------------------------------- writing


def write_synthetic_nyu(path: str | Path, num_images: int, seed: int, *, progress: bool = False) -> Path:
    """Render `num_images` rooms from `seed` into a MATLAB v7.3 file laid out like nyu_depth_v2_labeled.mat.

    Datasets as h5py sees them: `images` (N, 3, 640, 480) uint8, `depths` and `rawDepths` (N, 640, 480)
    float32 m, one deflate-compressed chunk per image; the 512-byte user block holds the MATLAB header.
    Written image by image (a worker thread compresses image i while image i + 1 renders) into a temporary
    file beside `path`, renamed into place when complete. Returns `path`.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"expected num_images to be an int >= 1, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"expected seed to be an int >= 0, got {seed!r}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_SIZE) as f:
            datasets = (
                _create_dataset(f, "images", (num_images, 3, WIDTH, HEIGHT), np.uint8, "uint8"),
                _create_dataset(f, "depths", (num_images, WIDTH, HEIGHT), np.float32, "single"),
                _create_dataset(f, "rawDepths", (num_images, WIDTH, HEIGHT), np.float32, "single"),
            )
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                for i in tqdm(range(num_images), desc="rendering rooms", unit="img", disable=not progress):
                    rgb, depth, raw = render_scene(random_scene(np.random.default_rng([seed, i])))
                    # MATLAB's column-major arrays as h5py sees them: (480, 640, 3) -> (3, 640, 480), (480, 640) -> .T
                    arrays = (rgb.transpose(2, 1, 0), depth.T, raw.T)
                    if pending is not None:
                        _write_chunks(datasets, i - 1, pending.result())
                    pending = pool.submit(_compress_chunks, arrays)
                _write_chunks(datasets, num_images - 1, pending.result())
        _write_matlab_header(tmp)
    return Path(path)


def _create_dataset(f: h5py.File, name: str, shape: tuple[int, ...], dtype: type, matlab_class: str) -> h5py.Dataset:
    """A dataset with one chunk per image, shuffle (multi-byte types) + deflate, no timestamps, its MATLAB class."""
    ds = f.create_dataset(
        name,
        shape=shape,
        dtype=dtype,
        chunks=(1, *shape[1:]),
        compression="gzip",
        compression_opts=_DEFLATE_LEVEL,
        shuffle=np.dtype(dtype).itemsize > 1,
        track_times=False,
    )
    ds.attrs.create("MATLAB_class", np.bytes_(matlab_class))
    return ds


def _compress_chunks(arrays: tuple[np.ndarray, ...]) -> list[bytes]:
    """Each array as its dataset's filters store it: HDF5 byte shuffle (multi-byte types), then zlib deflate."""
    chunks = []
    for a in arrays:
        # shuffle: byte k of every element together, k = 0 .. itemsize - 1
        shuffled = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.itemsize).T
        chunks.append(zlib.compress(np.ascontiguousarray(shuffled).data, _DEFLATE_LEVEL))
    return chunks


def _write_chunks(datasets: tuple[h5py.Dataset, ...], i: int, chunks: list[bytes]) -> None:
    """Store image i's already filtered chunks directly (all filters applied: mask 0)."""
    for ds, chunk in zip(datasets, chunks, strict=True):
        ds.id.write_direct_chunk((i,) + (0,) * (ds.ndim - 1), chunk, filter_mask=0)


def _write_matlab_header(path: Path) -> None:
    """Write MATLAB's 128-byte header into the HDF5 user block: text, subsystem offset, version 0x0200, 'IM'."""
    text = MATLAB_HEADER_TEXT.encode("ascii").ljust(116, b" ")
    header = text + bytes(8) + (0x0200).to_bytes(2, "little") + b"IM"
    with open(path, "r+b") as f:
        f.write(header)
