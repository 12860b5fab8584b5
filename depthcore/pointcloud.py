"""Depth maps as coloured point clouds: pinhole back-projection and binary PLY files.

Camera frame (OpenCV's): x right, y down, z forward along the optical axis, metres. Depth maps hold z (the
distance along the optical axis, as NYU's do), not the distance along the ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depthcore.checks import check_number, check_same_shape, check_shape

#: One PLY vertex: position in metres, colour 0..255; packed, 15 bytes, little-endian.
VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
PLY_COMMENT = "depthcore predict: camera frame, x right, y down, z forward, metres"


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of one image: focal lengths fx, fy and principal point cx, cy.

    cx, cy are 0-based with pixel centres on integers: the top-left pixel's centre is (0, 0), as in OpenCV.
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        check_number("fx", self.fx, 0.0, open_low=True)
        check_number("fy", self.fy, 0.0, open_low=True)
        check_number("cx", self.cx)
        check_number("cy", self.cy)


def back_project(depth: np.ndarray, rgb: np.ndarray, camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """depth (H, W) metres, rgb (H, W, 3) uint8 -> xyz (N, 3) float32 metres, colours (N, 3) uint8.

    One point per valid pixel (finite depth > 0), in row-major order; pixel (row v, column u) with depth z goes to
    x = (u - cx) * z / fx, y = (v - cy) * z / fy, z.
    """
    check_shape("depth", depth.shape, ("H", "W"))
    check_same_shape("rgb", rgb.shape, "depth's (H, W, 3)", (*depth.shape, 3))
    valid = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)  # (N,) row and column indices, row-major
    z = depth[valid].astype(np.float64)
    xyz = np.stack([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], axis=1)  # (N, 3)
    return xyz.astype(np.float32), rgb[valid]


def ply_bytes(xyz: np.ndarray, colours: np.ndarray) -> bytes:
    """xyz (N, 3) float metres, colours (N, 3) uint8 -> a binary little-endian PLY file of N coloured vertices."""
    check_shape("xyz", xyz.shape, ("N", 3))
    check_same_shape("colours", colours.shape, "xyz", xyz.shape)
    vertices = np.empty(len(xyz), VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colours[:, channel]
    header = "\n".join([
        "ply",
        "format binary_little_endian 1.0",
        f"comment {PLY_COMMENT}",
        f"element vertex {len(vertices)}",
        *(f"property {'float' if VERTEX[name].kind == 'f' else 'uchar'} {name}" for name in VERTEX.names),
        "end_header",
    ])
    return (header + "\n").encode("ascii") + vertices.tobytes()
