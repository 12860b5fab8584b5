"""The ray caster against depths computed by hand from the NYU intrinsics, shading and raw-depth holes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from depthcore.sources.render import render_scene
from depthcore.sources.scenes import Box, Camera, Material, Scene

FX, FY, CX, CY = 518.8579, 519.4696, 325.5824, 253.7362  # NYU Kinect intrinsics (NYU Depth v2 toolbox)
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


def test_camera_outside_the_room() -> None:
    with pytest.raises(ValueError, match="expected the camera inside the 4.0 x 3.0 x 5.0 m room"):
        render_scene(room(camera_z=5.5))


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
