from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from depthcore import synthetic
from depthcore.nyu import NyuMat
from depthcore.synthetic import Box, Camera, Material, Scene, random_scene, render_scene, write_synthetic_nyu

FX, FY, CX, CY = 518.8579, 519.4696, 325.5824, 253.7362  # NYU Kinect intrinsics (REFERENCE.md)
GREY = Material((0.5, 0.5, 0.5), (0.6, 0.6, 0.6), "plain", 1.0, salt=0)


def room(*boxes: Box, length: float = 5.0, camera_z: float = 1.0, pitch: float = 0.0) -> Scene:
    """A 4 x 3 x `length` m room, camera at x 2, height 1.5, looking along +z."""
    return Scene(
        width=4.0,
        length=length,
        height=3.0,
        room_materials=(GREY,) * 6,
        boxes=boxes,
        camera=Camera(x=2.0, height=1.5, z=camera_z, yaw=0.0, pitch=pitch),
        light=(3.5, 2.7, 2.0),
        light_power=1.0,
        noise_seed=0,
    )


CUBE = Box(x=2.0, z=3.0, size_x=1.0, size_y=1.0, size_z=1.0, yaw=0.0, material=GREY)  # front face at z 2.5


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synthetic")
    return {
        "a": write_synthetic_nyu(d / "a.mat", 2, seed=7),
        "b": write_synthetic_nyu(d / "b.mat", 2, seed=7),
        "one": write_synthetic_nyu(d / "one.mat", 1, seed=7),
        "other": write_synthetic_nyu(d / "other.mat", 2, seed=8),
    }


def test_same_seed_same_bytes(files: dict[str, Path]) -> None:
    assert files["a"].read_bytes() == files["b"].read_bytes()
    assert files["a"].read_bytes() != files["other"].read_bytes()
    # image i depends on (seed, i) only
    with NyuMat(files["a"]) as two, NyuMat(files["one"]) as one:
        np.testing.assert_array_equal(two[0][0], one[0][0])
        np.testing.assert_array_equal(two.raw_depth(0), one.raw_depth(0))
        assert not np.array_equal(two[0][1], two[1][1])


def test_matlab_73_layout(files: dict[str, Path]) -> None:
    head = files["a"].read_bytes()[:512]
    assert head.startswith(b"MATLAB 7.3 MAT-file, Platform: ")
    assert head[124:128] == b"\x00\x02IM"  # version 0x0200 and the endian indicator, little-endian
    assert head[128:] == bytes(384)
    with h5py.File(files["a"], "r") as f:
        assert f.userblock_size == 512
        assert sorted(f.keys()) == ["depths", "images", "rawDepths"]
        assert (f["images"].shape, f["images"].dtype) == ((2, 3, 640, 480), np.uint8)
        for name in ("depths", "rawDepths"):
            assert (f[name].shape, f[name].dtype) == ((2, 640, 480), np.float32)
            assert f[name].attrs["MATLAB_class"] == b"single"
        assert f["images"].attrs["MATLAB_class"] == b"uint8"


def test_values_in_range(files: dict[str, Path]) -> None:
    with NyuMat(files["a"]) as m:
        assert len(m) == 2
        for i in range(2):
            rgb, depth = m[i]
            raw = m.raw_depth(i)
            assert 0.5 <= depth.min() and depth.max() <= 10.0  # camera clear of everything; NYU's 10 m cap
            holes = raw == 0
            assert 0.001 < holes.mean() < 0.5
            np.testing.assert_array_equal(raw[~holes], depth[~holes])
            assert raw.max() <= 8.0
            assert rgb.std() > 10 and int(rgb.max()) - int(rgb.min()) > 100


def test_bad_arguments_and_nothing_left_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="expected num_images to be an int >= 1"):
            write_synthetic_nyu(tmp_path / "x.mat", bad, seed=0)
    with pytest.raises(ValueError, match="expected seed to be an int >= 0"):
        write_synthetic_nyu(tmp_path / "x.mat", 1, seed=-1)

    def fail(scene: Scene) -> None:
        raise RuntimeError("render failed")

    monkeypatch.setattr(synthetic, "render_scene", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        write_synthetic_nyu(tmp_path / "x.mat", 2, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_bad_scenes() -> None:
    with pytest.raises(ValueError, match="expected the camera inside the 4.0 x 3.0 x 5.0 m room"):
        render_scene(room(camera_z=5.5))
    with pytest.raises(ValueError, match="expected a pattern in"):
        replace(GREY, pattern="zigzag")
    with pytest.raises(ValueError, match="scale > 0"):
        replace(GREY, scale=0.0)


def test_depth_is_z_distance_in_an_empty_room() -> None:
    _, depth, _ = render_scene(room())
    # the far wall z = 5 is 4 m ahead: the same z-distance at the centre and off-axis (the ray is 4.51 m long)
    assert depth[253, 325] == pytest.approx(4.0, abs=1e-5)
    assert depth[100, 100] == pytest.approx(4.0, abs=1e-5)
    # floor, ceiling and the wall x = 0, with NYU's 1-based pixel coordinates (col + 1, row + 1)
    assert depth[470, 320] == pytest.approx(1.5 * FY / (471 - CY), rel=1e-5)
    assert depth[0, 320] == pytest.approx(1.5 * FY / (CY - 1), rel=1e-5)
    assert depth[253, 0] == pytest.approx(2.0 * FX / (CX - 1), rel=1e-5)


def test_pitch_and_yaw() -> None:
    _, depth, _ = render_scene(room(pitch=0.5))
    slope = (253 - CY) / FY  # the ray's y slope in the camera frame; the floor is 1.5 m below
    assert depth[252, 325] == pytest.approx(1.5 / (slope * math.cos(0.5) + math.sin(0.5)), rel=1e-5)
    turned = room()
    turned = replace(turned, camera=replace(turned.camera, yaw=math.pi / 2))  # looks along +x
    _, depth, _ = render_scene(turned)
    assert depth[253, 325] == pytest.approx(2.0, abs=1e-5)


def test_boxes_occlude() -> None:
    _, depth, _ = render_scene(room(CUBE))
    assert depth[450, 325] == pytest.approx(1.5, abs=1e-5)  # front face z = 2.5
    assert depth[400, 325] == pytest.approx(0.5 * FY / (401 - CY), rel=1e-5)  # top face, 0.5 m below the camera
    assert depth[253, 325] == pytest.approx(4.0, abs=1e-5)  # over the box: the far wall
    turned = replace(CUBE, z=3.2, yaw=math.pi / 4)  # its nearest edge at x 2, z 3.2 - sqrt(0.5)
    _, depth, _ = render_scene(room(turned))
    slope = (301 - CX) / FX  # column 300 sees the face going back to the left from that edge
    assert depth[450, 300] == pytest.approx((2.2 - math.sqrt(0.5)) / (1 + slope), rel=1e-5)


def test_raw_depth_holes() -> None:
    _, depth, raw = render_scene(room(CUBE))
    # floor (3.95 m) left of the cube (1.5 m, from column 152): the projector's shadow, about
    # FX * 0.075 * (1 / 1.5 - 1 / 3.95) = 16 px wide; none right of the cube (up to column 497)
    assert (raw[450, 136:152] == 0).all()
    assert raw[450, 130] == depth[450, 130] > 3.9
    assert (raw[450, 500:520] == depth[450, 500:520]).all()
    # beyond 8 m the sensor returns nothing
    _, depth, raw = render_scene(room(length=9.5, camera_z=0.7))
    assert depth[253, 325] == pytest.approx(8.8, abs=1e-5) and raw[253, 325] == 0
    assert raw[470, 325] == depth[470, 325] < 8
    # dark absorbent furniture loses patches
    black = replace(GREY, color_a=(0.05,) * 3, color_b=(0.05,) * 3, absorbent=True)
    _, depth, raw = render_scene(room(replace(CUBE, material=black)))
    face = raw[430:470, 200:450]
    assert 0.2 < (face == 0).mean() < 0.95


def test_box_casts_a_shadow() -> None:
    """The cube darkens floor it does not hide, on the side away from the light (x 3.5), by more than
    a change of exposure would."""
    rgb_empty, depth_empty, _ = render_scene(room(pitch=0.4))
    rgb_box, depth_box, _ = render_scene(room(CUBE, pitch=0.4))
    visible = depth_box == depth_empty
    ratio = rgb_box.mean(axis=2)[visible] / np.maximum(rgb_empty.mean(axis=2)[visible], 1)
    shadow = ratio < 0.75 * np.median(ratio)
    assert shadow.sum() > 1000
    cols = np.broadcast_to(np.arange(640), depth_box.shape)[visible][shadow]
    world_x = 2.0 + (cols + 1 - CX) / FX * depth_box[visible][shadow]  # yaw 0: image right is +x
    assert world_x.max() < 2.5


def test_random_scenes_are_valid() -> None:
    counts = []
    for i in range(100):
        scene = random_scene(np.random.default_rng([0, i]))
        cam = scene.camera
        assert math.dist((0, 0, 0), (scene.width, scene.height, scene.length)) <= 10.0
        assert 0.6 <= cam.x <= scene.width - 0.6 and 0.6 <= cam.z <= scene.length - 0.6
        assert 1.0 <= cam.height <= scene.height - 0.5
        for box in scene.boxes:
            corners = footprint(box)
            assert (corners[:, 0] >= 0).all() and (corners[:, 0] <= scene.width).all()
            assert (corners[:, 1] >= 0).all() and (corners[:, 1] <= scene.length).all()
            assert 0 < box.size_y < scene.height
            assert distance_to_polygon((cam.x, cam.z), corners) >= 1.0
        counts.append(len(scene.boxes))
    assert min(counts) >= 1 and np.mean(counts) >= 3


def footprint(box: Box) -> np.ndarray:
    """(4, 2) corners (x, z) of the box's footprint, in order around it."""
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [box.size_x / 2, box.size_z / 2]
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    axis_x, axis_z = np.array([c, s]), np.array([-s, c])  # the box's local axes in (x, z)
    return np.array([box.x, box.z]) + half[:, :1] * axis_x + half[:, 1:] * axis_z


def distance_to_polygon(point: tuple[float, float], corners: np.ndarray) -> float:
    """Distance from a point to a convex polygon (0 inside), from its edges."""
    p = np.array(point)
    edges = [(corners[k], corners[(k + 1) % len(corners)]) for k in range(len(corners))]
    crosses = [(b - a)[0] * (p - a)[1] - (b - a)[1] * (p - a)[0] for a, b in edges]
    if all(c >= 0 for c in crosses) or all(c <= 0 for c in crosses):
        return 0.0
    nearest = [a + np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1) * (b - a) for a, b in edges]
    return min(float(np.linalg.norm(p - q)) for q in nearest)
