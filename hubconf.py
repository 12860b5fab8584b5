"""torch.hub entry point: DenseDepth as a `depthcore.api.DepthModel`.

    model = torch.hub.load("path/to/this/repository", "densedepth", source="local", weights="models/model.pt")
    depth = model.predict("photo.jpg")  # (H, W) float32 metres, the image's own size

Nothing is downloaded: `weights` is a file on disk, a depthcore model file (`dvc pull models/model.pt`, `dvc artifacts
get`, `depthcore import-keras`), an exported .onnx, or the authors' Keras nyu.h5. depthcore is imported when the
entry point is called, so that torch.hub names any missing package from `dependencies` first (it checks them after
importing this file).
"""

from __future__ import annotations

#: Packages (import names) that `depthcore.api` imports, checked by torch.hub before `densedepth` runs.
dependencies = ["torch", "torchvision", "numpy", "PIL", "yaml", "tqdm", "h5py", "scipy", "pandas", "matplotlib",
                "kornia", "pytorch_msssim"]


def densedepth(weights: str, device: str = "auto", precision: str = "auto"):
    """DenseDepth (Alhashim and Wonka, arXiv 1812.11941) with the weights at `weights`, on `device` in `precision`
    (auto: as `depthcore predict` chooses): `depthcore.load_model`'s object, whose `predict(image)` gives metres."""
    from depthcore.api import load_model

    return load_model(weights, device=device, precision=precision)
