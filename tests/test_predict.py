"""depthcore predict: each kind of input, outputs at the input's size, the PLY, batching, large and hostile images, and
every error.

Most tests load a stand-in network whose depth is known by hand (`tests.stand_in.RedDepth`) instead of a model
file; `model_file` tests go through a real saved DenseDepth.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

import depthcore.predict as predict_module
from depthcore.cli import main
from depthcore.codec import metres_to_mm
from depthcore.device import resolve_runtime
from depthcore.frame import predict_images
from depthcore.inference import load_predictor, save_model
from depthcore.model import DenseDepth, ModelSpec
from depthcore.pointcloud import VERTEX
from depthcore.predict import read_picture, read_rgb
from tests.helpers import ROOT, depthcore_status, make_config
from tests.stand_in import ramp, red_depth, red_predictor

_run = partial(depthcore_status, "predict")  # `depthcore predict ARGS` in this process -> exit status

ORIENTATION_TAG = 0x0112  # EXIF Orientation
ROTATE_90_CW = 6  # EXIF Orientation value: the stored image is displayed rotated 90 degrees clockwise
CONV3_GAIN, CONV3_BIAS = 20.0, 3.0  # DepthNorm output about 3 +- 0.5: 10 m / 3 = 3.3 m, give or take
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tiny(monkeypatch) -> list[torch.Size]:
    """predict loads RedDepth instead of a model file; returns the shapes of the batches it was given."""
    shapes: list[torch.Size] = []
    predictor = red_predictor()

    def fake_load(path, runtime):
        def call(rgb):
            shapes.append(rgb.shape)
            return predictor(rgb)
        call.runtime = predictor.runtime  # what the summary line names
        return call

    monkeypatch.setattr(predict_module, "load_predictor", fake_load)
    return shapes


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A real DenseDepth saved with save_model (~170 MB, written once for the module): random weights, seeded,
    except that its last convolution is scaled so the output is a varied 2.6-4.9 m on random images instead of
    the 10 m everywhere (the clamped DepthNorm range) that a fresh network gives."""
    torch.manual_seed(0)
    model = DenseDepth(downsample=True, decoder="full")  # the decoder CONV3_GAIN was chosen for
    with torch.no_grad():
        model.conv3.weight.mul_(CONV3_GAIN)
        model.conv3.bias.fill_(CONV3_BIAS)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    config = make_config(**{"model.decoder": "full"})
    save_model(path, model, ModelSpec.from_config(config), config=config, epochs=0, origin="a test")
    return path




def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- reading each kind of input ---------------------------------------------------------------------------------

def test_read_rgb_each_kind(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (9, 5, 4), dtype=np.uint8)
    rgba[..., 3] = np.arange(5) * 60  # varied alpha, which must not change the colours
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), rgba[..., :3])

    grey = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, axis=2))

    wide = np.array([[0, 257, 65535, 1000]], np.uint16)  # / 257, rounded: 0, 1, 255, 3.89 -> 4
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")  # stored as 16-bit greyscale
    np.testing.assert_array_equal(read_rgb(tmp_path / "wide.png")[..., 0], [[0, 1, 255, 4]])

    palette = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 128]], np.uint8)
    index = np.array([[0, 1, 2], [2, 2, 1]], np.uint8)
    image = Image.frombytes("P", (3, 2), index.tobytes())
    image.putpalette(palette.ravel().tolist())
    image.save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette.png"), palette[index])


def test_read_rgb_applies_exif_orientation(tmp_path):
    stored = np.zeros((40, 64, 3), np.uint8)  # stored 64 wide, 40 high: left half red, right half blue
    stored[:, :32, 0] = 255
    stored[:, 32:, 2] = 255
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif)
    upright = read_rgb(tmp_path / "turned.jpg")
    assert upright.shape == (64, 40, 3)  # displayed 40 wide, 64 high
    # turned clockwise, the stored left half (red) is on top
    assert upright[:28, :, 0].min() > 200 and upright[:28, :, 2].max() < 60
    assert upright[36:, :, 2].min() > 200 and upright[36:, :, 0].max() < 60


def _write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """One image of each kind -> {stem: (H, W) of the upright image}."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / "landscape.jpg")
    Image.fromarray(rng.integers(0, 256, (90, 50, 4), dtype=np.uint8)).save(folder / "portrait_alpha.png")
    Image.fromarray(rng.integers(0, 256, (33, 47), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)).quantize(8).save(folder / "palette.png")
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8)).save(folder / "turned.jpg", exif=exif)
    return {"landscape": (60, 80), "portrait_alpha": (90, 50), "grey": (33, 47), "wide": (20, 30),
            "palette": (25, 25), "turned": (70, 30)}


def test_every_input_kind_gives_outputs_at_its_own_size(tmp_path, tiny, capsys):
    sizes = _write_inputs(tmp_path / "in")
    assert _run(tmp_path / "in", "--out", tmp_path / "out") == 0
    for stem, size in sizes.items():
        depth = _read_png(tmp_path / "out" / f"{stem}_depth.png")
        color = _read_png(tmp_path / "out" / f"{stem}_depth_color.png")
        assert depth.shape == size and depth.dtype == np.uint16, stem
        assert color.shape == (*size, 3) and color.dtype == np.uint8, stem
        assert 1000 <= depth.min() and depth.max() <= 5000  # RedDepth's 1..5 m
    assert len(_files(tmp_path / "out")) == 2 * len(sizes)  # no PLY without --ply, no temporary files left
    out = capsys.readouterr()
    assert f"predicted {len(sizes)} of {len(sizes)} images in" in out.out and str(tmp_path / "out") in out.out
    assert f"{len(sizes)}/{len(sizes)}" in out.err  # the progress bar's last line


# ---- outputs and batching -------------------------------------------------------------------------------------------

def test_images_batch_together_whatever_their_sizes(tmp_path, tiny):
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(30, 40), (50, 20), (480, 640), (10, 90), (64, 64)]
    for i, size in enumerate(sizes):
        Image.fromarray(ramp(*size, axis=i % 2)).save(folder / f"{i}.png")
    assert _run(folder, "--out", tmp_path / "batched", "--batch-size", "2") == 0
    assert [tuple(s) for s in tiny] == [(2, 3, 480, 640), (2, 3, 480, 640), (1, 3, 480, 640)]
    assert _run(folder, "--out", tmp_path / "single", "--batch-size", "1") == 0
    for i in range(len(sizes)):
        name = f"{i}_depth.png"
        np.testing.assert_array_equal(_read_png(tmp_path / "batched" / name), _read_png(tmp_path / "single" / name))


def test_real_model_file_depth_png_is_the_predictors_output(tmp_path, model_file, capsys):
    """Through a saved DenseDepth: a 640x480 image is not letterboxed, so the 16-bit PNG is the predictor's own
    output in millimetres, within the 0.5 mm of rounding."""
    rgb = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "room.png")
    args = ("--model", model_file, "--device", "cpu", "--precision", "fp32")
    assert _run(tmp_path / "room.png", "--out", tmp_path / "out", *args) == 0
    expected = load_predictor(model_file, resolve_runtime("cpu", "fp32", True))(
        torch.from_numpy(rgb).permute(2, 0, 1)[None]
    )[0, 0].numpy()  # (480, 640) metres
    assert expected.max() - expected.min() > 1.0  # a varied map, not one clamped value
    stored = _read_png(tmp_path / "out" / "room_depth.png")
    assert stored.dtype == np.uint16 and stored.shape == (480, 640)
    np.testing.assert_allclose(stored / 1000, expected, atol=0.0005 + 1e-6)
    assert "on cpu (fp32)" in capsys.readouterr().out


def test_python_m_depthcore_runs_predict(tmp_path, model_file):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "depthcore", "predict", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out"),
               "--model", str(model_file), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path / "out") == ["a_depth.png", "a_depth_color.png"]
    missing = subprocess.run([*command[:-4], "--model", str(tmp_path / "none.pt")], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no model file at") and missing.stderr.count("\n") == 1


def test_ply_header_count_and_a_vertex(tmp_path, tiny):
    rgb = ramp(30, 40, axis=1)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert _run(tmp_path / "a.png", "--out", tmp_path, "--ply", "--fx", "50", "--fy", "60", "--cx", "19.5",
                "--cy", "14.5") == 0
    data = (tmp_path / "a.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert header.decode().splitlines() == [
        "ply",
        "format binary_little_endian 1.0",
        "comment depthcore predict: camera frame, x right, y down, z forward, metres",
        "element vertex 1200",  # 30 x 40 pixels, all valid (RedDepth gives 1..5 m)
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
    ]
    assert len(body) == 1200 * 15
    vertices = np.frombuffer(body, VERTEX)
    depth_mm = _read_png(tmp_path / "a_depth.png")
    v, u = 7, 33  # row 7, column 33: vertex 7 * 40 + 33 in row-major order
    vertex = vertices[v * 40 + u]
    z = depth_mm[v, u] / 1000  # the PLY holds the unrounded depth: within 0.5 mm
    assert vertex["z"] == pytest.approx(z, abs=0.0005)
    assert vertex["x"] == pytest.approx((33 - 19.5) * vertex["z"] / 50, rel=1e-6)
    assert vertex["y"] == pytest.approx((7 - 14.5) * vertex["z"] / 60, rel=1e-6)
    assert (vertex["red"], vertex["green"], vertex["blue"]) == tuple(rgb[v, u])


def test_default_camera_in_the_ply(tmp_path, tiny):
    Image.fromarray(ramp(240, 320, axis=1)).save(tmp_path / "a.png")
    assert _run(tmp_path / "a.png", "--out", tmp_path, "--ply") == 0
    vertices = np.frombuffer((tmp_path / "a.ply").read_bytes().split(b"end_header\n")[1], VERTEX)
    vertex = vertices[10 * 320 + 300]  # row 10, column 300
    assert vertex["x"] == pytest.approx((300 - 162.0412) * vertex["z"] / 259.42895, rel=1e-5)
    assert vertex["y"] == pytest.approx((10 - 126.1181) * vertex["z"] / 259.7348, rel=1e-5)


# ---- large, multi-frame and hostile images --------------------------------------------------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims width x height 8-bit RGB pixels: a pixel bomb's header (its
    compressed data holds 100 zero bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # bit depth 8, colour type 2 (RGB), no interlace
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b"")


def test_pixel_bombs_and_truncated_files_are_named_and_skipped(tmp_path, tiny, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_png_claiming(20000, 20000))
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    (folder / "cut.jpg").write_bytes(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])  # its header whole, half its pixels
    Image.fromarray(ramp(30, 40, axis=0)).save(folder / "good.png")
    pillows_limit = Image.MAX_IMAGE_PIXELS
    assert _run(folder, "--out", tmp_path / "out") == 2
    assert Image.MAX_IMAGE_PIXELS == pillows_limit  # as it was
    assert _files(tmp_path / "out") == ["good_depth.png", "good_depth_color.png"]
    captured = capsys.readouterr()
    assert (f"skipped {folder / 'bomb.png'}: 20000x20000 pixels, more than the 268435456 that depthcore predict reads"
            in captured.err)
    assert f"skipped {folder / 'cut.jpg'}: cannot decode its pixels" in captured.err
    assert "predicted 1 of 3 images" in captured.out  # the summary, then the error
    assert captured.err.strip().splitlines()[-1] == (
        f"error: 2 of 3 inputs could not be read: {folder / 'bomb.png'}, {folder / 'cut.jpg'}")


def test_the_pixel_limit_is_max_pixels_and_not_pillows(tmp_path, tiny, capsys, monkeypatch):
    """Pillow's own limit (here 100 pixels: it would refuse anything above 200) does not apply; MAX_PIXELS does,
    to the pixel."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(predict_module, "MAX_PIXELS", 30 * 40)
    Image.fromarray(ramp(30, 40, axis=1)).save(tmp_path / "limit.png")  # 1200 pixels: read
    Image.fromarray(ramp(30, 41, axis=1)).save(tmp_path / "over.png")  # 1230 pixels: refused
    assert _run(tmp_path / "limit.png", tmp_path / "over.png", "--out", tmp_path / "out") == 2
    assert _files(tmp_path / "out") == ["limit_depth.png", "limit_depth_color.png"]
    assert f"skipped {tmp_path / 'over.png'}: 41x30 pixels, more than the 1200 that" in capsys.readouterr().err
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.fixture
def decoded_sizes(monkeypatch) -> list[tuple[int, int]]:
    """The (width, height) at which each JPEG that predict reads is decoded, after Pillow's draft."""
    sizes: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return sizes


def test_a_large_photo_is_shrunk_as_it_is_read_and_its_depth_is_full_size(tmp_path, tiny, decoded_sizes):
    """A 3840x2880 JPEG, 6 times its 640x480 letterbox: decoded at half size (1920x1440, no less than 3 times the
    letterbox) and shrunk to the letterbox; its depth map is 3840x2880 and is RedDepth's by hand."""
    rgb = ramp(2880, 3840, axis=1)
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    picture = read_picture(tmp_path / "big.jpg")
    assert picture.rgb.shape == (480, 640, 3) and picture.size == (2880, 3840) and picture.frames == 1
    assert decoded_sizes == [(1920, 1440)]
    assert _run(tmp_path / "big.jpg", "--out", tmp_path / "out") == 0
    depth = _read_png(tmp_path / "out" / "big_depth.png") / 1000  # (2880, 3840) metres
    assert depth.shape == (2880, 3840)
    # JPEG's few levels of red (4 m / 255 each) and, at the left and right edges, half an 8x8 block of the frame
    np.testing.assert_allclose(depth, red_depth(rgb), atol=0.04)
    full = predict_images(red_predictor(), [read_rgb(tmp_path / "big.jpg")])[0]  # through the full-size image
    np.testing.assert_allclose(depth, full, atol=0.005)


def test_an_image_within_the_reducing_gap_gives_the_full_size_paths_depth_exactly(tmp_path, tiny, decoded_sizes):
    """1000x750 is 1.6 times its letterbox: no decoder scaling, and the shrinking is the frame's own resize."""
    rgb = np.random.default_rng(3).integers(0, 256, (750, 1000, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "mid.jpg")
    assert _run(tmp_path / "mid.jpg", "--out", tmp_path / "out") == 0
    assert decoded_sizes == [(1000, 750)]
    full = predict_images(red_predictor(), [read_rgb(tmp_path / "mid.jpg")])[0]
    np.testing.assert_array_equal(_read_png(tmp_path / "out" / "mid_depth.png"), metres_to_mm(full, "mid"))


def test_a_turned_large_jpeg_is_decoded_small_and_read_upright(tmp_path, tiny, decoded_sizes):
    """Stored 2880 wide, 2160 high, left half red, shown turned clockwise: upright 2160 wide, 2880 high, red on top.
    Its letterbox is 360x480, so the decoder must be asked for 1440x1080 as stored (half size) for the upright
    1080x1440: asked the other way round it could not scale at all."""
    stored = np.zeros((2160, 2880, 3), np.uint8)
    stored[:, :1440, 0] = 255
    stored[:, 1440:, 2] = 255
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    picture = read_picture(tmp_path / "turned.jpg")
    assert picture.size == (2880, 2160) and picture.rgb.shape == (480, 360, 3)
    assert decoded_sizes == [(1440, 1080)]
    assert _run(tmp_path / "turned.jpg", "--out", tmp_path / "out") == 0
    depth = _read_png(tmp_path / "out" / "turned_depth.png") / 1000  # (2880, 2160) metres
    assert depth.shape == (2880, 2160)
    np.testing.assert_allclose(depth[:1300], 5.0, atol=0.05)  # red: 1 + 4 m
    np.testing.assert_allclose(depth[1580:], 1.0, atol=0.05)  # no red


def test_the_first_frame_of_an_animated_or_multi_page_image_is_used_and_said(tmp_path, tiny, capsys):
    frames = [Image.fromarray(np.full((30, 40, 3), (red, 0, 0), np.uint8)) for red in (255, 0, 128)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:2])
    assert _run(tmp_path / "anim.gif", tmp_path / "pages.tif", "--out", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'anim.gif'}: the first of its 3 frames is used" in err
    assert f"{tmp_path / 'pages.tif'}: the first of its 2 frames is used" in err
    for stem in ("anim", "pages"):
        assert (_read_png(tmp_path / "out" / f"{stem}_depth.png") == 5000).all()  # red 255: 1 + 4 m, frame 1's


# ---- errors -----------------------------------------------------------------------------------------------------

def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


def test_unreadable_image_is_named_and_the_others_complete(tmp_path, tiny, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "a.png")
    (folder / "b.jpg").write_text("this is a text file, not a JPEG")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "c.png")
    assert _run(folder, "--out", tmp_path / "out", "--batch-size", "3") == 2
    assert _files(tmp_path / "out") == ["a_depth.png", "a_depth_color.png", "c_depth.png", "c_depth_color.png"]
    captured = capsys.readouterr()
    assert f"skipped {folder / 'b.jpg'}: expected an image file" in captured.err
    assert captured.err.strip().splitlines()[-1] == f"error: 1 of 3 inputs could not be read: {folder / 'b.jpg'}"
    assert "predicted 2 of 3 images" in captured.out


def test_no_model_file(tmp_path, capsys):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    assert _run(tmp_path / "a.png", "--out", tmp_path / "out", "--model", tmp_path / "none.pt") == 2
    message = _error(capsys)
    assert message.startswith(f"error: no model file at {tmp_path / 'none.pt'}")
    assert "dvc repro" in message and "--model" in message
    assert _files(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
         "is not a depthcore model file (not a readable torch archive)"),
        (b"", "is empty (0 bytes), not a depthcore model file"),
    ],
)
def test_model_file_of_random_bytes_or_empty(tmp_path, capsys, content, message):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "m.pt").write_bytes(content)
    assert _run(tmp_path / "a.png", "--out", tmp_path / "out", "--model", tmp_path / "m.pt") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'm.pt'} {message}") and err.count("\n") == 1
    assert _files(tmp_path / "out") == []


def test_model_file_not_ours(tmp_path, capsys):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert _run(tmp_path / "a.png", "--out", tmp_path / "out", "--model", tmp_path / "other.pt") == 2
    assert f"error: {tmp_path / 'other.pt'} is not a depthcore model file" in _error(capsys)
    assert _files(tmp_path / "out") == []


def _refuses(tmp_path, capsys, monkeypatch, args, message):
    """The command stops with `message` before loading a model or writing anything."""
    def no_model(*_):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(predict_module, "load_predictor", no_model)
    assert _run(*args) == 2
    assert _error(capsys) == f"error: {message}"


def test_empty_and_imageless_folders(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = f"no images in {empty}: expected files ending in {' '.join(predict_module.IMAGE_SUFFIXES)}"
    _refuses(tmp_path, capsys, monkeypatch, [empty], expected)
    (empty / "notes.txt").write_text("x")
    (empty / ".hidden.png").write_bytes(b"")
    (empty / "sub.png").mkdir()  # a folder, even with an image suffix, is not an image
    _refuses(tmp_path, capsys, monkeypatch, [empty], expected)
    _refuses(tmp_path, capsys, monkeypatch, [tmp_path / "nowhere.jpg"], f"{tmp_path / 'nowhere.jpg'}: no such file "
             "or directory")


def test_two_inputs_with_one_stem(tmp_path, capsys, monkeypatch):
    for folder, suffix in (("a", ".png"), ("b", ".jpg")):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / f"x{suffix}")
    first, second = tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg"
    _refuses(tmp_path, capsys, monkeypatch, [first, second, "--out", tmp_path / "out"],
             f"{first} and {second} have the same name 'x', so their outputs would overwrite each other: rename one, "
             "or predict them in separate runs with different --out folders")
    assert not (tmp_path / "out").exists()


def test_output_over_an_input(tmp_path, capsys, monkeypatch):
    for name in ("x.png", "x_depth.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    _refuses(tmp_path, capsys, monkeypatch, [tmp_path, "--out", tmp_path],
             f"the output {tmp_path / 'x_depth.png'} would overwrite an input: choose another --out")


def test_unwritable_out(tmp_path, capsys, monkeypatch):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "file").write_text("a file where a folder is wanted")
    out = tmp_path / "file" / "out"
    _refuses(tmp_path, capsys, monkeypatch, [tmp_path / "a.png", "--out", out],
             f"cannot write to --out {out} (Not a directory): pass a folder you can write to with --out")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ply", "--fx", "500"],
         "--fx, --fy, --cx and --cy go together: give all four, or none for NYU's Kinect camera"),
        (["--fx", "5", "--fy", "5", "--cx", "1", "--cy", "1"],
         "--fx, --fy, --cx and --cy set the point cloud's camera: add --ply"),
        (["--ply", "--fx", "-5", "--fy", "5", "--cx", "1", "--cy", "1"],
         "camera for --ply: expected fx to be a number in (0.0, inf), got -5.0"),
    ],
)
def test_camera_arguments(tmp_path, capsys, monkeypatch, extra, message):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    _refuses(tmp_path, capsys, monkeypatch, [tmp_path / "a.png", "--out", tmp_path / "out", *extra], message)


def test_argument_errors(tmp_path, capsys):
    assert _run(tmp_path, "--batch-size", "0") == 2
    assert "argument --batch-size: expected a positive integer, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "COMMAND" in capsys.readouterr().err

