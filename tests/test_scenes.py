"""Scene layout: bad materials refused; random rooms and moved cameras keep depth in range and the camera clear."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest

from depthcore.sources.scenes import Box, Material, Scene, next_frame, random_scene

GREY = Material((0.5, 0.5, 0.5), (0.6, 0.6, 0.6), "plain", 1.0, salt=0)


def test_bad_materials() -> None:
    message = "expected pattern to be one of plain | checker | planks | stripes, got 'zigzag'"
    with pytest.raises(ValueError, match=re.escape(message)):
        replace(GREY, pattern="zigzag")
    with pytest.raises(ValueError, match=re.escape("expected scale (m) to be a number in (0.0, inf), got 0.0")):
        replace(GREY, scale=0.0)


def test_random_scenes_are_valid() -> None:
    counts = []
    for i in range(100):
        scene = random_scene(np.random.default_rng([0, i]))
        assert math.dist((0, 0, 0), (scene.width, scene.height, scene.length)) <= 10.0
        assert_camera_clear(scene)
        for box in scene.boxes:
            corners = footprint(box)
            assert (corners[:, 0] >= 0).all() and (corners[:, 0] <= scene.width).all()
            assert (corners[:, 1] >= 0).all() and (corners[:, 1] <= scene.length).all()
            assert 0 < box.size_y < scene.height
        counts.append(len(scene.boxes))
    assert min(counts) >= 1 and np.mean(counts) >= 3


def test_next_frame_moves_the_camera_a_little_and_keeps_it_clear() -> None:
    moved = 0
    for i in range(20):
        scene = random_scene(np.random.default_rng([0, i]))
        for n in range(30):
            frame = next_frame(scene, np.random.default_rng([0, i, n]))
            before, after = scene.camera, frame.camera
            # the same room, a small step and turn, a new noise pattern
            assert replace(frame, camera=before, noise_seed=scene.noise_seed) == scene
            assert frame.noise_seed != scene.noise_seed
            assert math.hypot(after.x - before.x, after.z - before.z) <= 0.08
            assert 0 < abs(after.yaw - before.yaw) <= 0.06
            assert (after.height, after.pitch) == (before.height, before.pitch)
            assert_camera_clear(frame)
            moved += (after.x, after.z) != (before.x, before.z)
            scene = frame
    assert moved > 0.9 * 20 * 30
    # the same generator state gives the same frame
    assert next_frame(scene, np.random.default_rng(5)) == next_frame(scene, np.random.default_rng(5))


def test_next_frame_keeps_the_place_when_no_step_is_clear() -> None:
    # a room exactly twice the wall clearance wide and long: the one clear place is its centre
    cramped = replace(random_scene(np.random.default_rng(0)), width=1.2, length=1.2, boxes=())
    cramped = replace(cramped, camera=replace(cramped.camera, x=0.6, z=0.6))
    frame = next_frame(cramped, np.random.default_rng(0))
    assert (frame.camera.x, frame.camera.z) == (0.6, 0.6)
    assert frame.camera.yaw != cramped.camera.yaw


def assert_camera_clear(scene: Scene) -> None:
    """The camera 0.6 m from the walls, 0.6 m below the ceiling and 1 m from every footprint (horizontally)."""
    cam = scene.camera
    assert 0.6 <= cam.x <= scene.width - 0.6 and 0.6 <= cam.z <= scene.length - 0.6
    assert 1.0 <= cam.height <= scene.height - 0.6
    for box in scene.boxes:
        assert distance_to_polygon((cam.x, cam.z), footprint(box)) >= 1.0


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
