"""Write and read the .npz shards that every stage after `download` consumes.

Layout under `out_dir` (e.g. data/shards):
    manifest.json              counts, array formats, each shard's file / count / bytes / SHA-256, provenance
    <split>/<split>-00000.npz  `shard_size` images in split order; image j of a shard is its members rgb_000j
                               (H, W, 3) uint8, depth_000j (H, W) uint16 and raw_depth_000j (H, W) uint16

Depth is stored as uint16 millimetres, rounded to nearest: at most 0.5 mm from the source, range 0 to
65.535 m. Raw depth keeps 0 as "no sensor reading" (a reading under 0.5 mm would also become 0). A shard is a
plain zip of .npy members that `np.load(path, allow_pickle=False)` opens lazily, so one image is read without
the rest of the shard.

Writing streams one image at a time (peak memory does not grow with the number of images), fixes every zip
timestamp and attribute (identical inputs give byte-identical shards) and builds the whole set in a temporary
folder next to `out_dir` that replaces it only when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

FORMAT = "depthcore-shards-v1"
MANIFEST = "manifest.json"
DEPTH_SCALE = 1000.0  # stored units per metre (millimetres)
DEPTH_MAX_M = np.iinfo(np.uint16).max / DEPTH_SCALE  # 65.535 m
DEPTH_BOUND_M = 0.5 / DEPTH_SCALE  # largest |stored - source| from rounding to the nearest millimetre
_ZIP_DATE = (
    1980,
    1,
    1,
    0,
    0,
    0,
)  # the earliest zip timestamp, for every member: no wall-clock time in a shard
_ZIP_COMPRESSION = zipfile.ZIP_DEFLATED
_ZIP_LEVEL = 1  # fastest zlib level: rendered and Kinect depth compress well even at 1
_MAX_SHARD_SIZE = 10_000  # member names carry a 4-digit position
_HASH_CHUNK = 1 << 20
_FIX_HINT = "the shards are stale or corrupt: rerun `dvc repro -f shard`, or delete data/shards and rerun it"


class ShardError(RuntimeError):
    """A shard set on disk does not match its manifest."""


class DepthReader(Protocol):
    """What `write_shards` reads from: `depthcore.nyu.NyuMat` or any object with these three methods."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...  # rgb (H, W, 3) uint8, depth (H, W) m

    def raw_depth(self, i: int) -> np.ndarray: ...  # (H, W) metres, 0 = no reading


def write_shards(
    reader: DepthReader,
    splits: dict[str, np.ndarray],
    out_dir: str | Path,
    shard_size: int,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Write every split of `reader` as shards of `shard_size` images under `out_dir`; return the manifest.

    `splits` maps split names to source indices (written in that order); `provenance` (source, seed, split
    method, ...) is merged into the manifest's top level and must be JSON-serialisable. Replaces `out_dir`
    as a whole, and only on success.
    """
    if not isinstance(shard_size, int) or not 1 <= shard_size <= _MAX_SHARD_SIZE:
        raise ValueError(f"expected shard_size an integer in [1, {_MAX_SHARD_SIZE}], got {shard_size!r}")
    _check_indices(splits, len(reader))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "shard_size": shard_size,
        "image_shape": None,
        "arrays": _array_formats(),
        "counts": {name: len(indices) for name, indices in splits.items()},
        "source_indices": {name: [int(i) for i in indices] for name, indices in splits.items()},
        "shards": {},
    }
    clashes = sorted(set(provenance) & set(manifest))
    if clashes:
        raise ValueError(f"expected provenance keys other than the manifest's own, got {clashes}")
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished set is an ordinary folder
        for name, indices in splits.items():
            manifest["shards"][name] = _write_split(reader, name, indices, tmp, shard_size, manifest)
        manifest.update(provenance)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def read_image(shard: np.lib.npyio.NpzFile, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image j of an open shard: rgb (H, W, 3) uint8, depth (H, W) float32 m, raw_depth (H, W) float32 m."""
    key = _member_suffix(j)
    return shard["rgb" + key], decode_depth(shard["depth" + key]), decode_depth(shard["raw_depth" + key])


def encode_depth(depth: np.ndarray, what: str) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 millimetres, nearest; `what` names the image in errors."""
    finite = np.isfinite(depth)
    if not finite.all() or depth.min() < 0 or depth.max() > DEPTH_MAX_M:
        bad = depth[~finite] if not finite.all() else depth[(depth < 0) | (depth > DEPTH_MAX_M)]
        raise ValueError(f"{what}: expected depth in [0, {DEPTH_MAX_M}] m, got a value of {bad.flat[0]!r}")
    return np.rint(depth.astype(np.float64) * DEPTH_SCALE).astype(np.uint16)


def decode_depth(stored: np.ndarray) -> np.ndarray:
    """(H, W) uint16 millimetres -> (H, W) float32 metres."""
    return (stored.astype(np.float32) / np.float32(DEPTH_SCALE)).astype(np.float32)


def _write_split(
    reader: DepthReader, name: str, indices: np.ndarray, root: Path, shard_size: int, manifest: dict[str, Any]
) -> list[dict[str, Any]]:
    """Write one split's shards under root/name; return their manifest entries."""
    (root / name).mkdir()
    entries = []
    for start in range(0, len(indices), shard_size):
        rel = f"{name}/{name}-{start // shard_size:05d}.npz"
        chunk = indices[start : start + shard_size]
        with zipfile.ZipFile(root / rel, "w") as zf:
            for j, index in enumerate(chunk):
                _write_image(zf, j, reader, int(index), manifest)
        entries.append({"file": rel, "count": len(chunk), **_file_digest(root / rel)})
    return entries


def _write_image(
    zf: zipfile.ZipFile, j: int, reader: DepthReader, index: int, manifest: dict[str, Any]
) -> None:
    """Read source image `index` and add it to the open shard as image j."""
    rgb, depth = reader[index]
    raw = reader.raw_depth(index)
    what = f"source image {index}"
    shape = [int(s) for s in depth.shape]
    if manifest["image_shape"] is None:
        manifest["image_shape"] = shape
    if (
        rgb.dtype != np.uint8
        or rgb.shape != (*shape, 3)
        or raw.shape != depth.shape
        or shape != manifest["image_shape"]
    ):
        raise ValueError(
            f"{what}: expected rgb {(*manifest['image_shape'], 3)} uint8, depth and raw depth "
            f"{tuple(manifest['image_shape'])}, got rgb {rgb.shape} {rgb.dtype}, depth {depth.shape}, "
            f"raw {raw.shape}"
        )
    key = _member_suffix(j)
    _write_member(zf, "rgb" + key, rgb)
    _write_member(zf, "depth" + key, encode_depth(depth, what))
    _write_member(zf, "raw_depth" + key, encode_depth(raw, what + " (raw depth)"))


def _write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Add `array` as `name`.npy with a fixed timestamp and attributes."""
    info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
    info.create_system = 3  # unix, whatever the host
    info.external_attr = 0o644 << 16
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    zf.writestr(info, buffer.getbuffer(), compress_type=_ZIP_COMPRESSION, compresslevel=_ZIP_LEVEL)


def _member_suffix(j: int) -> str:
    return f"_{j:04d}"


def _array_formats() -> dict[str, Any]:
    """How each member is stored, for the manifest."""
    depth = {
        "dtype": "uint16",
        "units": "millimetres",
        "decode": f"metres = stored / {DEPTH_SCALE:g}",
        "max_abs_error_m": DEPTH_BOUND_M,
        "max_m": DEPTH_MAX_M,
    }
    return {
        "rgb": {"dtype": "uint8", "layout": "(H, W, 3)", "units": "8-bit RGB, lossless"},
        "depth": {**depth, "layout": "(H, W)", "holes": "filled (NYU `depths`)"},
        "raw_depth": {**depth, "layout": "(H, W)", "holes": "0 = no sensor reading (NYU `rawDepths`)"},
        "members": "rgb_XXXX, depth_XXXX, raw_depth_XXXX for image XXXX of the shard (zero-padded from 0000)",
    }


def _check_indices(splits: dict[str, np.ndarray], num_images: int) -> None:
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
    """{"bytes": size, "sha256": hex digest} of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _verify_shard(path: Path, entry: dict[str, Any]) -> None:
    if not path.is_file():
        raise ShardError(f"shard {path}: expected {entry['bytes']} bytes, found no file; {_FIX_HINT}")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ShardError(f"shard {path}: expected {entry['bytes']} bytes, found {size}; {_FIX_HINT}")
    found = _file_digest(path)["sha256"]
    if found != entry["sha256"]:
        raise ShardError(f"shard {path}: expected SHA-256 {entry['sha256']}, found {found}; {_FIX_HINT}")


def _replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`, removing what was there only after `new` is in place."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)
