"""Ray-cast a `depthcore.sources.scenes.Scene` into NYU-like images: colour, exact depth and Kinect-like raw depth.

The camera has the NYU Kinect intrinsics (`nyu.FX` ...) on the 640x480 frame; rendering casts one ray per pixel
(vectorised float32 numpy):

- depth is the z-distance along the optical axis in metres (the NYU convention, not the ray length), at most
  `nyu.MAX_DEPTH`; every ray is written as (x, y, 1) in camera space, so its hit parameter t *is* that depth;
- colour is a procedural texture in surface coordinates (tiles, planks, stripes, blotches, fine grain) times
  Lambertian shading from a point light with distance falloff plus ambient, then exposure, gamma and noise;
- raw depth is depth with Kinect-like holes (0): the projector's parallax shadow left of near objects, mixed
  pixels at depth edges, grazing surfaces, dark absorbent patches, and everything beyond `RAW_MAX_RANGE`.

One ray caster: casting, surfaces, shading and the simulated sensor work on the same per-pixel arrays.

Camera frame: x right, y down, z forward (world frame: `depthcore.sources.scenes`). Pixel (row, col) has the NYU
toolbox's 1-based coordinates (col + 1, row + 1). Only arithmetic, sqrt and floor touch the images: a scene always
renders to the same bytes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from depthcore.nyu import CX, CY, FX, FY, HEIGHT, MAX_DEPTH, WIDTH
from depthcore.sources.scenes import ROOM_SURFACES, Box, Camera, Material, Scene, footprint, footprint_distance

RAW_MAX_RANGE = 8.0  # m: the simulated sensor returns nothing beyond this
_ROOM_NORMALS = np.array([[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], np.float32)
_ROOM_UV_AXES = ((0, 2), (0, 2), (2, 1), (2, 1), (0, 1), (0, 1))  # world axes (u, v) of each room surface
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
    for x, z in footprint(box):
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
    if footprint_distance(box, lx, lz) < 2 * _SHADOW_MARGIN:  # the light is above the (grown) footprint
        return np.arange(to_light.shape[1])
    corners = [(x - lx, z - lz) for x, z in footprint(box, _SHADOW_MARGIN)]

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
