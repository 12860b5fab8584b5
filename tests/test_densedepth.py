"""DenseDepth's nyu_data.zip read in place: layout, index space, stored bytes, depth encodings, refusals, splits;
and the synthetic zip writer.

Most zips here are written by hand with zipfile and Pillow, in the layout DenseDepth's loader reads in the real file;
the layout facts are checked on those and on `write_synthetic_densedepth_zip`'s zips alike.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthcore.codec import decode_image, depth_png_to_metres
from depthcore.errors import DepthcoreError
from depthcore.sources import synthetic
from depthcore.sources.densedepth import DenseDepthZip, DenseDepthZipError, densedepth_splits, room
from depthcore.sources.scenes import Scene
from depthcore.sources.synthetic import write_synthetic_densedepth_zip

H, W = 480, 640
SCENES = {"kitchen_0001_out": 2, "office_0003_out": 1}  # scene -> frames
NUM_TRAIN, NUM_TEST = 3, 2
TRAIN_CSV, TEST_CSV = "data/nyu2_train.csv", "data/nyu2_test.csv"
TRAIN_ROW = re.compile(r"data/nyu2_train/(?P<scene>[^/,]+)/(?P<n>\d+)\.jpg,data/nyu2_train/(?P=scene)/(?P=n)\.png")
TEST_ROW = re.compile(r"data/nyu2_test/(?P<t>\d{5})_colors\.png,data/nyu2_test/(?P=t)_depth\.png")


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB, (H, W) uint8 greyscale or (H, W) uint16 16-bit greyscale as a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def rgb_frame(k: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """A smooth (H, W, 3) uint8 picture that differs with k."""
    rows, cols = np.indices(shape)
    return np.stack([(rows + k) % 256, (cols + 7 * k) % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


def depth8_values() -> np.ndarray:
    """(480, 640) uint8 holding every value 0..255 (column c holds c % 256)."""
    return np.broadcast_to(np.arange(W) % 256, (H, W)).astype(np.uint8)


def depth16_values() -> np.ndarray:
    """(480, 640) uint16 millimetres, 0 to 9999."""
    return (np.arange(H * W) % 10_000).reshape(H, W).astype(np.uint16)


def layout() -> dict[str, bytes]:
    """The members of a small nyu_data.zip: SCENES' frames, NUM_TEST test images and the two CSVs."""
    members, train_rows, test_rows = {}, [], []
    for scene, frames in SCENES.items():
        for n in range(1, frames + 1):
            stem = f"data/nyu2_train/{scene}/{n}"
            members[stem + ".jpg"] = jpeg(rgb_frame(len(train_rows)))
            members[stem + ".png"] = png(depth8_values())
            train_rows.append(f"{stem}.jpg,{stem}.png")
    for t in range(NUM_TEST):
        stem = f"data/nyu2_test/{t:05d}"
        members[stem + "_colors.png"] = png(rgb_frame(100 + t))
        members[stem + "_depth.png"] = png(depth16_values())
        test_rows.append(f"{stem}_colors.png,{stem}_depth.png")
    members[TRAIN_CSV] = "\n".join(train_rows).encode() + b"\n"
    members[TEST_CSV] = "\n".join(test_rows).encode() + b"\n"
    return members


@pytest.fixture(scope="module")
def members() -> dict[str, bytes]:
    return layout()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def assert_refused(path: Path, *words: str, index: int | None = None) -> None:
    """Opening `path` (or reading sample `index`) raises DenseDepthZipError naming the zip and every word."""
    with pytest.raises(DenseDepthZipError) as info:
        with DenseDepthZip(path) as z:
            z.sample(index)
    message = str(info.value)
    for word in (str(path), *words):
        assert word in message, (word, message)
    assert isinstance(info.value, DepthcoreError) and isinstance(info.value, ValueError)


def assert_layout(path: Path) -> list[str]:
    """Check the nyu_data.zip layout facts with zipfile and Pillow alone; return each train row's scene."""
    with zipfile.ZipFile(path) as zf:
        train = zf.read(TRAIN_CSV).decode().splitlines()
        test = zf.read(TEST_CSV).decode().splitlines()
        assert all(TRAIN_ROW.fullmatch(row) for row in train) and all(TEST_ROW.fullmatch(row) for row in test)
        listed = [member for row in train + test for member in row.split(",")]
        assert sorted(listed + [TRAIN_CSV, TEST_CSV]) == sorted(zf.namelist())
        for rows, rgb_format, depth_modes in ((train, "JPEG", ("L",)), (test, "PNG", ("I;16", "I"))):
            for row in rows:
                rgb, depth = (Image.open(io.BytesIO(zf.read(member))) for member in row.split(","))
                assert (rgb.format, rgb.size, rgb.mode) == (rgb_format, (W, H), "RGB")
                assert (depth.format, depth.size) == ("PNG", (W, H)) and depth.mode in depth_modes
    return [TRAIN_ROW.fullmatch(row)["scene"] for row in train]


def test_hand_written_layout(tmp_path: Path, members: dict[str, bytes]) -> None:
    scenes = assert_layout(write_zip(tmp_path / "nyu_data.zip", members))
    assert scenes == ["kitchen_0001_out", "kitchen_0001_out", "office_0003_out"]


def test_index_space_and_scenes(tmp_path: Path, members: dict[str, bytes]) -> None:
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", members)) as z:
        assert (len(z), z.num_train, z.num_test, z.has_raw_depth) == (5, 3, 2, False)
        assert [z.scene(i) for i in range(3)] == ["kitchen_0001_out", "kitchen_0001_out", "office_0003_out"]
        assert z.member_names(1) == ("data/nyu2_train/kitchen_0001_out/2.jpg", "data/nyu2_train/kitchen_0001_out/2.png")
        assert z.member_names(4) == ("data/nyu2_test/00001_colors.png", "data/nyu2_test/00001_depth.png")
        assert z.member_names(np.int64(0))[0].endswith("kitchen_0001_out/1.jpg")
        with pytest.raises(IndexError, match=r"expected a train image index in \[0, 3\)"):
            z.scene(3)  # a test image has no scene
        for bad in (5, -1):
            with pytest.raises(IndexError, match=r"expected an image index in \[0, 5\)"):
                z.sample(bad)
        with pytest.raises(TypeError, match="expected an image index"):
            z.sample(1.0)
    with pytest.raises(ValueError, match="closed"):
        z.sample(0)


def test_samples_are_the_stored_bytes(tmp_path: Path, members: dict[str, bytes]) -> None:
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", members)) as z:
        for i in range(len(z)):
            sample = z.sample(i)
            rgb_name, depth_name = z.member_names(i)
            assert sample.raw_depth is None
            for array, name in ((sample.rgb, rgb_name), (sample.depth, depth_name)):
                assert array.dtype == np.uint8 and array.ndim == 1
                assert array.tobytes() == members[name]
        assert z.sample(0).rgb[:2].tolist() == [0xFF, 0xD8]  # train RGB: JPEG
        assert z.sample(3).rgb[:4].tobytes() == b"\x89PNG"  # test RGB: PNG


def test_depth_round_trip(tmp_path: Path, members: dict[str, bytes]) -> None:
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", members)) as z:
        train = depth_png_to_metres(decode_image(z.sample(0).depth.tobytes(), "train"), "train")
        test = depth_png_to_metres(decode_image(z.sample(3).depth.tobytes(), "test"), "test")
    # 8-bit train depth: metres = v / 255 * 10; column c holds v = c % 256
    assert train[7, 51] == pytest.approx(2.0) and train[0, 255] == pytest.approx(10.0) and train[3, 256] == 0
    np.testing.assert_allclose(train[0, :256], np.arange(256) / 255 * 10, rtol=1e-6)
    # 16-bit test depth: millimetres; pixel (r, c) holds (640 r + c) % 10000
    assert test[1, 594] == pytest.approx(1.234) and test[15, 399] == pytest.approx(9.999)
    np.testing.assert_allclose(test, depth16_values() / 1000, rtol=1e-6)


def test_csvs_at_the_root_and_blank_lines(tmp_path: Path, members: dict[str, bytes]) -> None:
    moved = {name.removeprefix("data/") if name.endswith(".csv") else name: data for name, data in members.items()}
    moved["nyu2_train.csv"] = b"\n" + moved["nyu2_train.csv"].replace(b"\n", b"\r\n\n", 1) + b"\n  \n"
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", moved)) as z:
        assert (z.num_train, z.num_test) == (3, 2)
        assert z.sample(2).rgb.tobytes() == members["data/nyu2_train/office_0003_out/1.jpg"]


def test_three_equal_channel_depth_accepted(tmp_path: Path, members: dict[str, bytes]) -> None:
    grey = depth8_values()
    members = {**members, "data/nyu2_train/kitchen_0001_out/1.png": png(np.stack([grey] * 3, axis=-1))}
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", members)) as z:
        depth = depth_png_to_metres(decode_image(z.sample(0).depth.tobytes(), "train"), "train")
    assert depth[0, 51] == pytest.approx(2.0)


def test_not_a_densedepth_zip(tmp_path: Path, members: dict[str, bytes]) -> None:
    foreign = write_zip(tmp_path / "foreign.zip", {"readme.txt": b"not nyu"})
    assert_refused(foreign, "data/nyu2_train.csv", "nyu2_train.csv at the zip's root")
    no_test = write_zip(tmp_path / "no_test.zip", {k: v for k, v in members.items() if k != TEST_CSV})
    assert_refused(no_test, "data/nyu2_test.csv")
    text = tmp_path / "text.zip"
    text.write_text("hello")
    assert_refused(text, "expected a zip file", "download it again")
    assert_refused(tmp_path / "missing.zip", "found no file")


def test_truncated_zip(tmp_path: Path, members: dict[str, bytes]) -> None:
    data = write_zip(tmp_path / "good.zip", members).read_bytes()
    truncated = tmp_path / "nyu_data.zip"
    for size in (len(data) // 2, len(data) - 1):
        truncated.write_bytes(data[:size])
        assert_refused(truncated, "truncated", "download it again")


def test_damaged_member(tmp_path: Path, members: dict[str, bytes]) -> None:
    path = write_zip(tmp_path / "nyu_data.zip", members)
    data = bytearray(path.read_bytes())
    name = b"data/nyu2_test/00001_depth.png"
    start = data.index(name) + len(name) + 100  # inside the member's deflated data
    data[start : start + 50] = bytes(50)
    path.write_bytes(bytes(data))
    with DenseDepthZip(path) as z:
        z.sample(3)  # the others still read
    assert_refused(path, "data/nyu2_test/00001_depth.png", "cannot read", index=4)


def test_bad_csv_lines(tmp_path: Path, members: dict[str, bytes]) -> None:
    for line, words in (
        (b"data/nyu2_test/00000_colors.png", ("expected `rgb path,depth path`",)),
        (b"a.png,b.png,c.png", ("expected `rgb path,depth path`",)),
        (b"data/nyu2_test/00000_colors.png,", ("expected `rgb path,depth path`",)),
        (b"data/nyu2_test/00000_colors.png,data/nyu2_test/00009_depth.png", ("data/nyu2_test/00009_depth.png",)),
    ):
        csv = members[TEST_CSV] + b"\n" + line + b"\n"  # line 4: after the 2 rows and a blank line
        path = write_zip(tmp_path / "nyu_data.zip", {**members, TEST_CSV: csv})
        assert_refused(path, "data/nyu2_test.csv line 4", *words)


def test_missing_member(tmp_path: Path, members: dict[str, bytes]) -> None:
    missing = "data/nyu2_train/kitchen_0001_out/2.png"
    path = write_zip(tmp_path / "nyu_data.zip", {k: v for k, v in members.items() if k != missing})
    assert_refused(path, "data/nyu2_train.csv line 2", missing, "does not hold")


def test_train_rgb_outside_a_scene_folder(tmp_path: Path, members: dict[str, bytes]) -> None:
    rows = members[TRAIN_CSV] + b"top.jpg,data/nyu2_train/office_0003_out/1.png\n"
    path = write_zip(tmp_path / "nyu_data.zip", {**members, TRAIN_CSV: rows, "top.jpg": b""})
    assert_refused(path, "data/nyu2_train.csv line 4", "scene folder", "top.jpg")


@pytest.mark.parametrize(
    ("member", "index", "data", "words"),
    [
        ("data/nyu2_test/00000_depth.png", 3, png(depth8_values()), ("expected depth values of 16 bits", "got 8-bit")),
        (
            "data/nyu2_train/kitchen_0001_out/2.png",
            1,
            png(depth16_values()),
            ("expected depth values of 8 bits (metres = value / 255 * 10)", "got 16-bit values"),
        ),
        ("data/nyu2_train/office_0003_out/1.png", 2, png(rgb_frame(0)), ("unequal channels",)),
        ("data/nyu2_train/office_0003_out/1.png", 2, png(depth8_values()[:240]), ("expected a depth PNG of 640x480",)),
        ("data/nyu2_train/kitchen_0001_out/1.jpg", 0, jpeg(rgb_frame(0, (240, 320))), ("640x480 RGB", "320x240")),
        ("data/nyu2_test/00001_colors.png", 4, png(depth8_values()), ("640x480 RGB", "mode L")),
        ("data/nyu2_test/00001_colors.png", 4, b"not an image", ("expected an image file",)),
    ],
)
def test_bad_images_refused_by_name(
    tmp_path: Path, members: dict[str, bytes], member: str, index: int, data: bytes, words: tuple[str, ...]
) -> None:
    path = write_zip(tmp_path / "nyu_data.zip", {**members, member: data})
    with DenseDepthZip(path) as z:  # opening does not decode images
        for i in set(range(len(z))) - {index}:
            z.sample(i)
    assert_refused(path, member, *words, index=index)


def test_reopens_after_a_fork(tmp_path: Path, members: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    with DenseDepthZip(write_zip(tmp_path / "nyu_data.zip", members)) as z:
        first = z.sample(0)
        parent_file = z._file
        monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen in a forked child
        again = z.sample(0)
        assert z._file is not parent_file and z._file is not None
        assert again.rgb.tobytes() == first.rgb.tobytes()


# ------------------------------------------------------------------------------------------------- splits


def scenes_zip(path: Path, frames: dict[str, int], num_test: int = 2) -> Path:
    """A zip whose CSVs list `frames` per scene (empty members: opening never decodes images)."""
    members, rows = {}, []
    for scene, count in frames.items():
        for n in range(count):
            stem = f"data/nyu2_train/{scene}/{n}"
            members[stem + ".jpg"] = members[stem + ".png"] = b""
            rows.append(f"{stem}.jpg,{stem}.png")
    members["data/nyu2_test/x_colors.png"] = members["data/nyu2_test/x_depth.png"] = b""
    members[TRAIN_CSV] = "\n".join(rows).encode()
    members[TEST_CSV] = b"data/nyu2_test/x_colors.png,data/nyu2_test/x_depth.png\n" * num_test
    return write_zip(path, members)


# 10 scenes of 1 to 4 frames, listed out of name order and interleaved as a CSV may list them
FRAMES = {f"room_{k:04d}_out": 1 + k % 4 for k in (7, 2, 9, 0, 4, 1, 8, 3, 6, 5)}


def test_splits_hold_out_whole_scenes(tmp_path: Path) -> None:
    with DenseDepthZip(scenes_zip(tmp_path / "nyu_data.zip", FRAMES, num_test=3)) as z:
        splits = densedepth_splits(z, 0.25, seed=3)
        assert list(splits) == ["train", "val", "test"]
        for indices in splits.values():
            assert indices.dtype == np.int64 and (np.diff(indices) > 0).all()
        assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(z)))
        assert z.num_train == 23  # 10 scenes + (0 + 1 + 2 + 3 + 0 + 1 + 2 + 3 + 0 + 1) extra frames
        assert splits["test"].tolist() == [23, 24, 25]
        scenes = {name: {z.scene(i) for i in splits[name]} for name in ("train", "val")}
        assert not scenes["train"] & scenes["val"] and scenes["train"] | scenes["val"] == set(FRAMES)
        # round(0.25 * 10) = 2 scenes (Python rounds 2.5 to even), each with all its frames
        names = sorted(FRAMES)
        expected = {names[k] for k in np.random.default_rng(3).permutation(10)[:2]}
        assert scenes["val"] == expected
        assert len(splits["val"]) == sum(FRAMES[s] for s in expected)
        # deterministic by seed; other seeds pick other scenes
        assert all(np.array_equal(a, b) for a, b in zip(splits.values(), densedepth_splits(z, 0.25, 3).values()))
        picks = {tuple(densedepth_splits(z, 0.25, seed)["val"]) for seed in range(10)}
        assert len(picks) > 1
        # at least one validation scene, at least one training scene
        assert len({z.scene(i) for i in densedepth_splits(z, 0.01, 0)["val"]}) == 1
        assert len({z.scene(i) for i in densedepth_splits(z, 0.9, 0)["train"]}) == 1


def test_splits_refusals(tmp_path: Path) -> None:
    with DenseDepthZip(scenes_zip(tmp_path / "nyu_data.zip", FRAMES)) as z:
        for bad in (0, 1, 1.5, -0.1, True, "0.1"):
            with pytest.raises(ValueError, match=re.escape("expected val_fraction to be a number in (0.0, 1.0)")):
                densedepth_splits(z, bad, 0)
        with pytest.raises(ValueError, match="expected seed to be an integer >= 0"):
            densedepth_splits(z, 0.1, -1)
        with pytest.raises(DenseDepthZipError, match="leave at least one of the 10 training rooms"):
            densedepth_splits(z, 0.95, 0)  # round(9.5) = 10 scenes
    with DenseDepthZip(scenes_zip(tmp_path / "one.zip", {"room_0001_out": 3})) as z:
        with pytest.raises(DenseDepthZipError, match="lower val_fraction or use a zip with more scenes"):
            densedepth_splits(z, 0.1, 0)


def test_recordings_of_one_room_stay_on_one_side(tmp_path: Path) -> None:
    """NYU's raw scenes `kitchen_0028a`, `kitchen_0028b` are two recordings of one room: holding out by folder name
    could put the room in train and validation; holding out by room cannot."""
    assert [room(s) for s in ("kitchen_0028a_out", "kitchen_0028b_out", "office_0003_out", "study_0004ab")] == [
        "kitchen_0028_out", "kitchen_0028_out", "office_0003_out", "study_0004"]
    frames = {f"room_{k:04d}{letter}_out": 2 for k in range(6) for letter in "ab"}  # 6 rooms, 2 recordings each
    with DenseDepthZip(scenes_zip(tmp_path / "nyu_data.zip", frames)) as z:
        for seed in range(5):
            splits = densedepth_splits(z, 0.5, seed)
            rooms = {name: {room(z.scene(i)) for i in splits[name]} for name in ("train", "val")}
            assert not rooms["train"] & rooms["val"]
            assert len(rooms["val"]) == 3  # round(0.5 * 6) rooms, not scenes


# ------------------------------------------------------------------------------------------- the writer


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("densedepth")
    return {
        "a": write_synthetic_densedepth_zip(d / "a.zip", 2, 2, 2, seed=5),
        "b": write_synthetic_densedepth_zip(d / "b.zip", 2, 2, 2, seed=5),
        "longer": write_synthetic_densedepth_zip(d / "longer.zip", 1, 3, 1, seed=5),
    }


def test_writer_layout(written: dict[str, Path]) -> None:
    scenes = assert_layout(written["a"])
    assert len(scenes) == 4 and scenes[0] == scenes[1] != scenes[2] == scenes[3]
    assert scenes[::2] == ["living_room_0001_out", "bedroom_0001_out"]
    with zipfile.ZipFile(written["a"]) as zf:
        stem = f"data/nyu2_train/{scenes[1]}/2"
        assert zf.read(TRAIN_CSV).decode().splitlines()[1] == f"{stem}.jpg,{stem}.png"
        assert zf.read(TEST_CSV) == (
            b"data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n"
            b"data/nyu2_test/00001_colors.png,data/nyu2_test/00001_depth.png\n"
        )
    with DenseDepthZip(written["a"]) as z:
        assert (len(z), z.num_train, z.num_test) == (6, 4, 2)
        assert [z.scene(i) for i in range(4)] == scenes
        for i in range(len(z)):
            z.sample(i)  # every image passes the reader's checks


def test_scene_names() -> None:
    # eight kinds in turn, numbered per kind
    assert [synthetic.scene_name(s) for s in (0, 1, 7, 8, 17)] == [
        "living_room_0001_out",
        "bedroom_0001_out",
        "classroom_0001_out",
        "living_room_0002_out",
        "bedroom_0003_out",
    ]


def test_writer_same_seed_same_bytes(written: dict[str, Path]) -> None:
    assert written["a"].read_bytes() == written["b"].read_bytes()
    # an image depends on (seed, scene, frame) or (seed, test index) only, not on how many there are
    with zipfile.ZipFile(written["a"]) as a, zipfile.ZipFile(written["longer"]) as longer:
        shared = set(a.namelist()) & set(longer.namelist()) - {TRAIN_CSV, TEST_CSV}
        assert len(shared) == 6  # scene 0's frames 1 and 2, test image 0
        for name in shared:
            assert a.read(name) == longer.read(name), name


def test_writer_frames_of_a_scene_are_near_duplicates(written: dict[str, Path]) -> None:
    with DenseDepthZip(written["a"]) as z:
        samples = [z.sample(i) for i in range(len(z))]  # 4 train frames (2 scenes), 2 test images
    depth = [depth_png_to_metres(decode_image(s.depth.tobytes(), "depth"), "depth") for s in samples]
    rgb = [decode_image(s.rgb.tobytes(), "rgb").astype(float) for s in samples]
    for frames in (rgb, depth):
        step = np.abs(frames[1] - frames[0]).mean()  # one scene, consecutive frames
        assert 0 < step < np.abs(frames[2] - frames[0]).mean()  # another scene
        assert 0 < np.abs(frames[3] - frames[2]).mean() < np.abs(frames[3] - frames[1]).mean()
        # test images are rooms of their own, further from every train frame than a frame from the next
        for test in frames[4:]:
            assert all(np.abs(test - frame).mean() > 2 * step for frame in frames[:4])


KNOWN_DEPTH = (2.0, 3.3, 9.99, 0.7, 10.0)  # m, written as these values:
KNOWN_8BIT = (51, 84, 255, 18, 255)  # round(d / 10 * 255): 51, 84.15, 254.745, 17.85, 255
KNOWN_MM = (2000, 3300, 9990, 700, 10000)


def known_render(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stand-in renderer: columns of KNOWN_DEPTH in turn, a smooth picture."""
    depth = np.resize(np.array(KNOWN_DEPTH, np.float32), W)[None].repeat(H, axis=0)
    return rgb_frame(0), depth, depth


def test_writer_depth_encodings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "render_scene", known_render)
    path = write_synthetic_densedepth_zip(tmp_path / "nyu_data.zip", 1, 1, 1, seed=0)
    with zipfile.ZipFile(path) as zf:
        train = np.asarray(Image.open(io.BytesIO(zf.read(f"data/nyu2_train/{assert_layout(path)[0]}/1.png"))))
        test = np.asarray(Image.open(io.BytesIO(zf.read("data/nyu2_test/00000_depth.png"))))
        colors = np.asarray(Image.open(io.BytesIO(zf.read("data/nyu2_test/00000_colors.png"))))
    assert train.dtype == np.uint8 and train[0, :5].tolist() == list(KNOWN_8BIT) and (train == train[0]).all()
    assert test[5, :5].astype(int).tolist() == list(KNOWN_MM)
    np.testing.assert_array_equal(colors, rgb_frame(0))
    with DenseDepthZip(path) as z:
        train_m = depth_png_to_metres(decode_image(z.sample(0).depth.tobytes(), "train"), "train")
        test_m = depth_png_to_metres(decode_image(z.sample(1).depth.tobytes(), "test"), "test")
        jpeg_rgb = decode_image(z.sample(0).rgb.tobytes(), "rgb")
    np.testing.assert_allclose(train_m[9, :5], [v / 255 * 10 for v in KNOWN_8BIT], rtol=1e-6)
    np.testing.assert_allclose(test_m[9, :5], [mm / 1000 for mm in KNOWN_MM], rtol=1e-6)
    assert np.abs(jpeg_rgb.astype(int) - rgb_frame(0)).mean() < 2  # JPEG: lossy, but close


def test_writer_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_after_one(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append(scene)
        if len(calls) > 1:
            raise RuntimeError("render failed")
        return known_render(scene)

    monkeypatch.setattr(synthetic, "render_scene", fail_after_one)
    with pytest.raises(RuntimeError, match="render failed"):
        write_synthetic_densedepth_zip(tmp_path / "nyu_data.zip", 2, 2, 1, seed=0)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_writer_bad_arguments(tmp_path: Path) -> None:
    good = {"num_scenes": 1, "frames_per_scene": 1, "num_test": 1, "seed": 0}
    for name, bad, words in (
        ("num_scenes", 0, "expected num_scenes to be an integer >= 1, got 0"),
        ("frames_per_scene", 1.0, "expected frames_per_scene to be an integer >= 1, got 1.0"),
        ("num_test", True, "expected num_test to be an integer >= 1, got True"),
        ("seed", -1, "expected seed to be an integer >= 0, got -1"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            write_synthetic_densedepth_zip(tmp_path / "x.zip", **{**good, name: bad})
    assert list(tmp_path.iterdir()) == []
