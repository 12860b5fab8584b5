"""NYU Depth v2 facts: the frame, the camera and the depth range every module shares (no file I/O here).

The reader of the labeled .mat is `depthcore.sources.nyu_mat`; the evaluation crops are in `depthcore.metrics`'s
protocol table.
"""

from __future__ import annotations

#: The NYU Depth v2 frame (rows, columns): every image, depth map and evaluation crop lives on it.
HEIGHT, WIDTH = 480, 640
FRAME_SHAPE = (HEIGHT, WIDTH)
#: Kinect RGB intrinsics from the NYU toolbox, pixels on the 640x480 frame (1-based pixel coordinates).
FX, FY, CX, CY = 518.8579, 519.4696, 325.5824, 253.7362
#: The depth range NYU data is used in (m): rendered rooms never exceed MAX_DEPTH, DenseDepth clamps depth to
#: [MIN_DEPTH, MAX_DEPTH] (10 to 1000 cm) for its DepthNorm target and its predictions, 8-bit depth PNGs scale by
#: MAX_DEPTH, and the evaluation protocols clamp predictions to it.
MIN_DEPTH, MAX_DEPTH = 0.1, 10.0
#: Images in the labeled NYU Depth v2 file, and of them the training images of NYU's official split (the other 654 are
#: its test images).
NYU_NUM_IMAGES, OFFICIAL_TRAIN_COUNT = 1449, 795
