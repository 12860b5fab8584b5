"""Indoor scenes to render: a box-shaped room with box-like furniture, a point light and a camera.

World frame: x and z horizontal, y up; the room spans [0, width] x [0, height] x [0, length] (m). A camera with yaw 0
and pitch 0 looks along +z with +x to the right of the image; positive pitch looks down. `random_scene` draws a room
whose every depth seen from the camera is at most `nyu.MAX_DEPTH`, with the camera clear of walls and furniture (a
camera inside furniture sees near-zero depths); `next_frame` moves the camera a little, as between frames of a
video, keeping the same clearances. `depthcore.sources.render.render_scene` turns a scene into images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from depthcore.checks import check_choice, check_number
from depthcore.nyu import MAX_DEPTH

CAMERA_CLEARANCE = 0.6  # m: the camera keeps at least this far (horizontally) from the walls
FURNITURE_CLEARANCE = 1.0  # m: and at least this far (horizontally) from every piece of furniture
FRAME_STEP = 0.08  # m: between frames of one scene the camera moves at most this far (horizontally)
FRAME_TURN = 0.06  # rad: and turns (yaw) at most this much
_STEP_TRIES = 20  # steps drawn for a frame before the camera stays where it is
ROOM_SURFACES = ("floor", "ceiling", "wall x=0", "wall x=width", "wall z=0", "wall z=length")
PATTERNS = ("plain", "checker", "planks", "stripes")


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
        check_choice("pattern", self.pattern, PATTERNS)
        check_number("scale (m)", self.scale, 0.0, open_low=True)


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


def next_frame(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same room a moment later, as in a video: the camera stepped and turned a little, fresh image noise.

    The step is up to `FRAME_STEP` in a horizontal direction drawn from `rng`, drawn again while it would take the
    camera within `CAMERA_CLEARANCE` of a wall or `FURNITURE_CLEARANCE` of furniture (after `_STEP_TRIES` draws the
    camera keeps its place); the yaw changes by up to `FRAME_TURN`. Height and pitch stay.
    """
    camera = scene.camera
    x, z = camera.x, camera.z
    for _ in range(_STEP_TRIES):
        heading, distance = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, FRAME_STEP))
        step_x, step_z = x + distance * math.sin(heading), z + distance * math.cos(heading)
        if _camera_clear(scene, step_x, step_z):
            x, z = step_x, step_z
            break
    yaw = camera.yaw + float(rng.uniform(-FRAME_TURN, FRAME_TURN))
    return replace(scene, camera=replace(camera, x=x, z=z, yaw=yaw), noise_seed=int(rng.integers(2**32)))


def _camera_clear(scene: Scene, x: float, z: float) -> bool:
    """Whether a camera at (x, z) keeps `CAMERA_CLEARANCE` from the walls and `FURNITURE_CLEARANCE` from furniture."""
    inside = CAMERA_CLEARANCE <= x <= scene.width - CAMERA_CLEARANCE
    inside = inside and CAMERA_CLEARANCE <= z <= scene.length - CAMERA_CLEARANCE
    return inside and all(footprint_distance(box, x, z) >= FURNITURE_CLEARANCE for box in scene.boxes)


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
        if box is not None and footprint_distance(box, camera.x, camera.z) >= FURNITURE_CLEARANCE:
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


# ------------------------------------------------------------------------------------------- footprints


def footprint_distance(box: Box, x: float, z: float) -> float:
    """Horizontal distance (m) from the point (x, z) to the box's footprint (0 inside)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    local_x = c * (x - box.x) + s * (z - box.z)
    local_z = -s * (x - box.x) + c * (z - box.z)
    return math.hypot(max(abs(local_x) - box.size_x / 2, 0.0), max(abs(local_z) - box.size_z / 2, 0.0))


def footprint(box: Box, margin: float = 0.0) -> list[tuple[float, float]]:
    """The (x, z) corners of the box's footprint grown by `margin` (m), in order around it."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    half_x, half_z = box.size_x / 2 + margin, box.size_z / 2 + margin
    local = ((-half_x, -half_z), (half_x, -half_z), (half_x, half_z), (-half_x, half_z))
    return [(box.x + c * lx - s * lz, box.z + s * lx + c * lz) for lx, lz in local]
