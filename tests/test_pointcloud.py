"""depthcore.pointcloud: back-projection by hand, the PLY layout, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from depthcore.pointcloud import VERTEX, Intrinsics, back_project, ply_bytes


def test_back_project_by_hand():
    depth = np.array([[2.0, np.nan, 0.0], [1.0, 4.0, -1.0]], np.float32)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    xyz, colours = back_project(depth, rgb, Intrinsics(fx=2.0, fy=4.0, cx=0.5, cy=1.0))
    # valid pixels (finite, > 0): (0, 0) z=2, (1, 0) z=1, (1, 1) z=4; x = (u - 0.5) z / 2, y = (v - 1) z / 4
    np.testing.assert_allclose(xyz, [[-0.5, -0.5, 2.0], [-0.25, 0.0, 1.0], [1.0, 0.0, 4.0]])
    np.testing.assert_array_equal(colours, [[0, 1, 2], [9, 10, 11], [12, 13, 14]])


def test_ply_bytes_layout():
    xyz = np.array([[1.5, -2.0, 3.25], [0.0, 0.5, 1.0]], np.float32)
    colours = np.array([[255, 0, 7], [1, 2, 3]], np.uint8)
    header, body = ply_bytes(xyz, colours).split(b"end_header\n")
    assert header.decode().splitlines() == [
        "ply",
        "format binary_little_endian 1.0",
        "comment depthcore predict: camera frame, x right, y down, z forward, metres",
        "element vertex 2",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
    ]
    # 15 bytes a vertex; 1.5 as a little-endian float32 is 00 00 c0 3f
    assert len(body) == 2 * 15 and body[:4] == bytes([0, 0, 0xC0, 0x3F]) and body[12:15] == bytes([255, 0, 7])
    vertices = np.frombuffer(body, VERTEX)
    np.testing.assert_array_equal(np.stack([vertices[a] for a in "xyz"], axis=1), xyz)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: back_project(np.zeros((2, 3)), np.zeros((2, 2, 3), np.uint8), Intrinsics(1, 1, 0, 0)),
         r"expected rgb and depth's \(H, W, 3\) of the same shape, got \(2, 2, 3\) and \(2, 3, 3\)"),
        (lambda: ply_bytes(np.zeros((2, 3)), np.zeros((3, 3), np.uint8)),
         r"expected colours and xyz of the same shape, got \(3, 3\) and \(2, 3\)"),
        (lambda: Intrinsics(0, 1, 0, 0), r"expected fx to be a number in \(0.0, inf\), got 0.0"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
