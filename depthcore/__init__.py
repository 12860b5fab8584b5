"""depthcore: DenseDepth monocular depth as a DVC pipeline, a command (`depthcore`) and a Python API.

    from depthcore import load_model
    depth = load_model("models/model.pt").predict("photo.jpg")  # (H, W) float32 metres

Importing the package is cheap (`import depthcore.config` must not import torch): `load_model` (`depthcore.api`)
is imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    """Package-level names, imported lazily (PEP 562)."""
    if name == "load_model":
        from depthcore.api import load_model

        return load_model
    raise AttributeError(f"module 'depthcore' has no attribute {name!r}")
