"""Write and read the .npz shards that every stage after `download` consumes.

Layout under `out_dir` (e.g. data/shards):
    manifest.json              counts, array formats, each shard's file / count / bytes / SHA-256, provenance
    <split>/<split>-00000.npz  `shard_size` images in split order; image j of a shard is its members rgb_000j,
                               depth_000j and, when the source has raw depth, raw_depth_000j

Each member stores what the source stores, so that a 50K-image JPEG training set stays near its own size:
- rgb: (H, W, 3) uint8 pixels (the .mat sources), or a 1-D uint8 array holding an image file's bytes (JPEG or PNG,
  as in DenseDepth's zip), decoded when read;
- depth, raw_depth: (H, W) uint16 millimetres (the .mat sources: rounded to nearest, at most 0.5 mm from the source,
  range 0 to 65.535 m), or a 1-D uint8 array holding a depth PNG's bytes (16-bit: millimetres; 8-bit: value / 255
  * 10 m, DenseDepth's training depth). Raw depth keeps 0 as "no sensor reading".
Pixel arrays are deflated; file bytes, already compressed, are stored. A shard is a plain zip of .npy members that
`np.load(path, allow_pickle=False)` opens lazily, so one image is read without the rest of the shard.

The writer and the reader of the format share this module, so that the two cannot drift apart.

Writing streams one image at a time (peak memory does not grow with the number of images), fixes every zip
timestamp and attribute (identical inputs give byte-identical shards) and builds the whole set in a temporary
folder next to `out_dir`, `.<name>.tmp`, that replaces it only when complete (`depthcore.files.atomic_folder`: one
left by a killed writer is cleared when the next write starts).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from depthcore.checks import check_int
from depthcore.codec import (
    DEPTH_BOUND_M,
    DEPTH_MAX_M,
    decode_image,
    depth_png_to_metres,
    mm_to_metres,
    open_image,
)
from depthcore.errors import DepthcoreError
from depthcore.files import atomic_folder, sha256_file

FORMAT = "depthcore-shards-v2"
MANIFEST = "manifest.json"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp, for every member: no wall-clock time in a shard
_ZIP_LEVEL = 1  # fastest zlib level for pixel arrays: rendered and Kinect depth compress well even at 1
_MAX_SHARD_SIZE = 10_000  # member names carry a 4-digit position
_FIX_HINT = "the shards are stale or corrupt: rerun `dvc repro -f shard`, or delete data/shards and rerun it"


class ShardError(DepthcoreError, RuntimeError):
    """A shard set on disk does not match its manifest."""


@dataclass(frozen=True)
class Sample:
    """One image as a source stores it (see the module docstring for the two forms of each member).

    rgb: (H, W, 3) uint8 pixels, or (N,) uint8 bytes of an image file; depth: (H, W) uint16 millimetres, or (N,) uint8
    bytes of a depth PNG; raw_depth: like depth (0 = no reading), None when the source has no raw depth.
    """

    rgb: np.ndarray
    depth: np.ndarray
    raw_depth: np.ndarray | None


class SampleSource(Protocol):
    """What `write_shards` reads from: each data source opens into one (`depthcore.sources`)."""

    has_raw_depth: bool  # every sample has raw_depth, or none has

    def __len__(self) -> int: ...

    def sample(self, i: int) -> Sample: ...


def write_shards(
    source: SampleSource,
    splits: dict[str, np.ndarray],
    out_dir: str | Path,
    shard_size: int,
    provenance: dict[str, Any],
    progress: Any = None,
) -> dict[str, Any]:
    """Write every split of `source` as shards of `shard_size` images under `out_dir`; return the manifest.

    `splits` maps split names to source indices (written in that order); `provenance` (source, seed, split
    method, ...) is stored as the manifest's `provenance` and must be JSON-serialisable. Replaces `out_dir`
    as a whole, and only on success. `progress(n)` is called after each image, e.g. a progress bar's update.
    """
    check_int("shard_size", shard_size, 1, _MAX_SHARD_SIZE)
    _check_indices(splits, len(source))
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "shard_size": shard_size,
        "image_shape": None,
        "has_raw_depth": bool(source.has_raw_depth),
        "arrays": _array_formats(),
        "counts": {name: len(indices) for name, indices in splits.items()},
        "source_indices": {name: [int(i) for i in indices] for name, indices in splits.items()},
        "shards": {},
        "provenance": dict(provenance),
    }
    with atomic_folder(out_dir) as tmp:
        for name, indices in splits.items():
            manifest["shards"][name] = _write_split(source, name, indices, _Target(tmp, shard_size, manifest, progress))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Load `out_dir/manifest.json`, checking that it describes a shard set of this format."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(
            f"expected a shard manifest at {path}, found none; run the shard stage (`dvc repro shard`)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: expected format {FORMAT!r}, got {manifest.get('format')!r}; {_FIX_HINT}")
    return manifest


def verify_shards(out_dir: str | Path, splits: Iterable[str] | None = None) -> dict[str, Any]:
    """Check size and SHA-256 of each shard of `splits` (default: all) against the manifest; return it.

    Raises `ShardError` naming the first shard that is missing or differs, with what was expected and found.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    names = list(manifest["shards"]) if splits is None else list(splits)
    for name in names:
        if name not in manifest["shards"]:
            raise ShardError(
                f"{out_dir}: expected split {name!r} in the manifest, found {list(manifest['shards'])}"
            )
        for entry in manifest["shards"][name]:
            _verify_shard(out_dir / entry["file"], entry)
    return manifest


def open_shard(path: str | Path) -> np.lib.npyio.NpzFile:
    """Open one shard for lazy random access to its members (no pickle)."""
    return np.load(path, allow_pickle=False)


def read_image(
    shard: np.lib.npyio.NpzFile, j: int, name: str = "shard"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Image j of an open shard (`name` in errors), decoded: rgb (H, W, 3) uint8, depth (H, W) float32 m, raw_depth
    the same or None."""
    key = _member_suffix(j)
    what = f"{name} image {j}"
    raw_key = "raw_depth" + key
    raw = _decode_depth(shard[raw_key], what) if raw_key in shard else None
    return _decode_rgb(shard["rgb" + key], what), _decode_depth(shard["depth" + key], what), raw


def _decode_rgb(member: np.ndarray, what: str) -> np.ndarray:
    """An rgb member -> (H, W, 3) uint8 pixels."""
    if member.ndim == 3:
        return member
    return decode_image(member.tobytes(), what).reshape(*_image_size(member, what), -1)[..., :3]


def _decode_depth(member: np.ndarray, what: str) -> np.ndarray:
    """A depth member -> (H, W) float32 metres."""
    if member.ndim == 2:
        return mm_to_metres(member)
    return depth_png_to_metres(decode_image(member.tobytes(), what), what)


def _image_size(member: np.ndarray, what: str) -> tuple[int, int]:
    """(H, W) of a member: its shape for pixels, its header for file bytes."""
    if member.ndim >= 2:
        return int(member.shape[0]), int(member.shape[1])
    width, height = open_image(member.tobytes(), what).size
    return height, width


@dataclass(frozen=True)
class _Target:
    """Where and how `write_shards` writes: the new set's folder, images per shard, the manifest being filled in
    (formats and raw depth), and the progress callback (images written) or None."""

    root: Path
    shard_size: int
    manifest: dict[str, Any]
    progress: Callable[[int], object] | None


def _write_split(source: SampleSource, name: str, indices: np.ndarray, target: _Target) -> list[dict[str, Any]]:
    """Write one split's shards under target.root/name; return their manifest entries."""
    root, shard_size, manifest, progress = target.root, target.shard_size, target.manifest, target.progress
    (root / name).mkdir()
    entries = []
    for start in range(0, len(indices), shard_size):
        rel = f"{name}/{name}-{start // shard_size:05d}.npz"
        chunk = indices[start : start + shard_size]
        with zipfile.ZipFile(root / rel, "w") as zf:
            for j, index in enumerate(chunk):
                _write_image(zf, j, source, int(index), manifest)
                if progress is not None:
                    progress(1)
        entries.append({"file": rel, "count": len(chunk), **_file_digest(root / rel)})
    return entries


def _write_image(zf: zipfile.ZipFile, j: int, source: SampleSource, index: int, manifest: dict[str, Any]) -> None:
    """Read source image `index` and add it to the open shard as image j."""
    sample = source.sample(index)
    what = f"source image {index}"
    members = {"rgb": sample.rgb, "depth": sample.depth}
    if manifest["has_raw_depth"]:
        if sample.raw_depth is None:
            raise ValueError(f"{what}: expected raw depth, as from every image of this source, got None")
        members["raw_depth"] = sample.raw_depth
    shapes = {key: _image_size(member, f"{what} ({key})") for key, member in members.items()}
    if manifest["image_shape"] is None:
        manifest["image_shape"] = list(shapes["rgb"])
    expected = tuple(manifest["image_shape"])
    for key, member in members.items():
        pixels = member.ndim > 1
        dtype = np.uint8 if key == "rgb" or not pixels else np.uint16
        layout = (*expected, 3) if key == "rgb" and pixels else expected if pixels else member.shape
        if member.dtype != dtype or member.shape != layout or shapes[key] != expected:
            form = "uint8 (H, W, 3)" if key == "rgb" else "uint16 (H, W) mm"
            raise ValueError(
                f"{what}: expected {key} of {expected[0]}x{expected[1]} pixels ({form} or a 1-D uint8 image file), "
                f"got {member.shape} {member.dtype} of {shapes[key][0]}x{shapes[key][1]}"
            )
        _write_member(zf, key + _member_suffix(j), member, compress=pixels)


def _write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray, compress: bool) -> None:
    """Add `array` as `name`.npy with a fixed timestamp and attributes; deflated when `compress`, else stored."""
    info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o644 << 16
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    if compress:
        zf.writestr(info, buffer.getbuffer(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL)
    else:
        zf.writestr(info, buffer.getbuffer(), compress_type=zipfile.ZIP_STORED)


def _member_suffix(j: int) -> str:
    return f"_{j:04d}"


def _array_formats() -> dict[str, Any]:
    """How each member is stored, for the manifest."""
    depth = (
        f"(H, W) uint16 millimetres (metres = stored / 1000, within {DEPTH_BOUND_M} m of the source, at most "
        f"{DEPTH_MAX_M} m), or a 1-D uint8 array of a depth PNG's bytes (16-bit: millimetres; 8-bit: "
        "value / 255 * 10 m)"
    )
    return {
        "rgb": "(H, W, 3) uint8 pixels, or a 1-D uint8 array of an image file's bytes (JPEG or PNG, as stored)",
        "depth": depth + "; holes filled",
        "raw_depth": depth + "; 0 = no sensor reading; present only when has_raw_depth",
        "members": "rgb_XXXX, depth_XXXX (and raw_depth_XXXX) for image XXXX of the shard (zero-padded from 0000)",
    }


def _check_indices(splits: dict[str, np.ndarray], num_images: int) -> None:
    """Each split a 1-D integer array of indices in [0, num_images)."""
    for name, indices in splits.items():
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"split {name!r}: expected a 1-D array of integers, got {indices.dtype} {indices.shape}"
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= num_images):
            raise ValueError(
                f"split {name!r}: expected values in [0, {num_images}), got {indices.min()}..{indices.max()}"
            )


def _file_digest(path: Path) -> dict[str, Any]:
    """{"bytes": size, "sha256": hex digest} of a file."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _verify_shard(path: Path, entry: dict[str, Any]) -> None:
    if not path.is_file():
        raise ShardError(f"shard {path}: expected {entry['bytes']} bytes, found no file; {_FIX_HINT}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ShardError(f"shard {path}: expected {entry['bytes']} bytes, found {size}; {_FIX_HINT}")
    found = _file_digest(path)["sha256"]
    if found != entry["sha256"]:
        raise ShardError(f"shard {path}: expected SHA-256 {entry['sha256']}, found {found}; {_FIX_HINT}")
