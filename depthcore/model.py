"""DenseDepth: a DenseNet-169 encoder and an upsampling decoder with skip connections (report Table 1).

Shapes for a (B, 3, 480, 640) input with `downsample=True` and the full decoder (report Table 1); without
downsampling the input is not pooled, so every map is 4x larger on each side (up to the floor of odd sizes after each
pooling) and the output is (B, 1, 240, 320); the half decoder has half the channels after CONV2 and in every block:

    input            (B,    3, 480, 640)
    DOWNSAMPLE       (B,    3, 120, 160)   MaxPool2d(4)
    CONV1  relu0     (B,   64,  60,  80)
    POOL1  pool0     (B,   64,  30,  40)
    POOL2  trans1    (B,  128,  15,  20)
    POOL3  trans2    (B,  256,   7,  10)
    norm5            (B, 1664,   3,   5)   -> relu -> CONV2 1x1   (B, 1664, 3, 5)
    UP1..UP4         (B,  832,   7,  10) (B, 416, 15, 20) (B, 208, 30, 40) (B, 104, 60, 80)
    CONV3            (B,    1,  60,  80)

Each UP block resizes bilinearly to its skip's size (x2 when the input's sides are multiples of 32), in one of the
UPSAMPLING modes. Output pixel i samples input position i * (in - 1) / (out - 1) with "corners" (the default;
`align_corners=True`), as the authors' Keras layer of 2019 did (`tf.image.resize_images(..., align_corners=True)` in
DenseDepth's layers.py), which their released weights were trained with; it samples (i + 0.5) * in / out - 0.5, clamped
to the image, with "half_pixel" (`align_corners=False`), as Keras 3's bilinear UpSampling2D and TensorFlow 2's
`tf.image.resize` do. `bn_eps` is the epsilon of every BatchNorm in the encoder: torchvision's 1e-5 by default,
1.001e-5 in Keras's DenseNet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import DenseNet169_Weights, densenet169

from depthcore.checks import check_choice, check_number
from depthcore.config import Config
from depthcore.errors import DepthcoreError
from depthcore.files import sha256_file

#: Encoder layers (names in torchvision's `densenet169().features`) whose outputs feed the decoder, shallow to deep.
SKIP_LAYERS = ("relu0", "pool0", "transition1", "transition2")
#: Channels of the encoder's last map (DenseNet-169's `norm5`).
BOTTLENECK_CHANNELS = 1664
#: Channels after CONV2 and after each decoder block, by `model.decoder`. "full": report Table 1 (and the authors'
#: PyTorch port); "half": every one halved, as in the authors' Keras code (`create_model(is_halffeatures=True)`, the
#: default their training script uses), a little over a quarter of the full decoder's multiply-adds.
DECODER_CHANNELS = {"full": (1664, 832, 416, 208, 104), "half": (832, 416, 208, 104, 52)}
SKIP_CHANNELS = (256, 128, 64, 64)  # the skips in decoder order: transition2, transition1, pool0, relu0
LEAKY_SLOPE = 0.2
TORCHVISION_BN_EPS = 1e-5  # torchvision's BatchNorm epsilon, which the ImageNet weights were trained with
#: How an UP block resizes: "corners" is `align_corners=True`, "half_pixel" `align_corners=False` (module docstring).
UPSAMPLING = ("corners", "half_pixel")
INPUT_POOL = 4
PRETRAINED_WEIGHTS = DenseNet169_Weights.IMAGENET1K_V1
#: torchvision names its weight files after the first hex digits of their SHA-256: "b2777c0a" here.
PRETRAINED_SHA256_PREFIX = Path(PRETRAINED_WEIGHTS.url).stem.rsplit("-", 1)[1]
#: The per-channel mean and std the ImageNet weights were trained with, applied inside the model when pretrained.
IMAGENET_MEAN, IMAGENET_STD = PRETRAINED_WEIGHTS.transforms().mean, PRETRAINED_WEIGHTS.transforms().std

# Old torchvision checkpoints (the ImageNet file among them) say "norm.1" where the module says "norm1".
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


class PretrainedWeightsUnavailable(DepthcoreError, RuntimeError):
    """The ImageNet weights file is neither cached nor downloadable, or is not the expected file."""


class UpBlock(nn.Module):
    """Upsample bilinearly to the skip's size, concatenate the skip, then (conv3x3 + LeakyReLU) twice.

    `upsampling` is one of UPSAMPLING: "corners" (`align_corners=True`) or "half_pixel" (`align_corners=False`).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, upsampling: str = "corners"):
        super().__init__()
        self.align_corners = check_choice("upsampling", upsampling, UPSAMPLING) == "corners"
        self.conv_a = nn.Conv2d(in_channels + skip_channels, out_channels, kernel_size=3, padding=1)
        self.conv_b = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, h, w), skip (B, C_skip, H, W) -> (B, C_out, H, W)."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        x = torch.cat([x, skip], dim=1)  # (B, C_in + C_skip, H, W)
        x = F.leaky_relu(self.conv_a(x), LEAKY_SLOPE)
        return F.leaky_relu(self.conv_b(x), LEAKY_SLOPE)


class DenseDepth(nn.Module):
    """Monocular depth network of Alhashim & Wonka, as specified in the report's Table 1 (`decoder="full"`) or with the
    half-width decoder of the authors' Keras code (`decoder="half"`; DECODER_CHANNELS).

    Input (B, 3, H, W) RGB in [0, 1]; output (B, 1, H/8, W/8) with `downsample=True`, (B, 1, H/2, W/2) otherwise, in
    the training target space of `depthcore.loss`.

    With ImageNet weights (`pretrained`) the input is normalised with ImageNet's mean and std inside the model (fixed
    buffers `input_mean`, `input_std`, saved with the weights), which is what those weights expect; the paper fed
    [0, 1] images unnormalised but fine-tuned every layer, BatchNorm included, which a frozen encoder never does.
    A random encoder gets no normalisation. A model rebuilt to load saved weights takes the structure of the model
    that was saved (`from_spec`, through `normalize_like_imagenet`), without fetching ImageNet weights.

    `upsampling` (one of UPSAMPLING) is how the decoder resizes and `bn_eps` the epsilon of every encoder BatchNorm
    (module docstring); the defaults are what this project trains with. `depthcore.keras_import` builds the model that
    the authors' Keras weights need.
    """

    def __init__(
        self,
        downsample: bool = True,
        *,
        decoder: str = "full",
        pretrained: bool = False,
        freeze_encoder: bool = False,
        upsampling: str = "corners",
        bn_eps: float = TORCHVISION_BN_EPS,
    ):
        super().__init__()
        self.downsample = downsample
        self.freeze_encoder = freeze_encoder
        self.upsampling = check_choice("upsampling", upsampling, UPSAMPLING)
        self.bn_eps = check_number("bn_eps", bn_eps, 0.0, open_low=True)
        self.encoder = densenet169(weights=None).features
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eps = self.bn_eps
        if pretrained:
            load_pretrained_encoder(self.encoder)
        self.normalize_like_imagenet(pretrained)
        in_channels, *block_channels = DECODER_CHANNELS[check_choice("decoder", decoder, DECODER_CHANNELS)]
        self.conv2 = nn.Conv2d(BOTTLENECK_CHANNELS, in_channels, kernel_size=1)
        blocks = []
        for skip_channels, out_channels in zip(SKIP_CHANNELS, block_channels):
            blocks.append(UpBlock(in_channels, skip_channels, out_channels, upsampling=upsampling))
            in_channels = out_channels
        self.up = nn.ModuleList(blocks)
        self.conv3 = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, pretrained: bool = False, freeze_encoder: bool = False) -> DenseDepth:
        """The one factory: the network a `ModelSpec` describes, for training (with ImageNet weights when
        `pretrained`), evaluation, prediction and import; without `pretrained` the weights are random."""
        model = cls(spec.downsample, decoder=spec.decoder, pretrained=pretrained, freeze_encoder=freeze_encoder,
                    upsampling=spec.upsampling, bn_eps=spec.bn_eps)
        model.normalize_like_imagenet(spec.imagenet_normalize)
        return model

    def normalize_like_imagenet(self, on: bool) -> None:
        """Normalise the input with ImageNet's mean and std inside the model (buffers `input_mean`, `input_std`,
        saved with the weights) when `on`; otherwise no normalisation and no buffers saved."""
        for name, values in (("input_mean", IMAGENET_MEAN), ("input_std", IMAGENET_STD)):
            self.register_buffer(name, torch.tensor(values).view(1, 3, 1, 1) if on else None)

    def train(self, mode: bool = True) -> DenseDepth:
        """Like `nn.Module.train`, but a frozen encoder stays in eval mode so its BatchNorm statistics never move."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 3, H', W') -> bottleneck (B, 1664, H'/32, W'/32) and the skips, deepest first (Table 1 order).

        The encoder's last layer is `norm5`, so the loop ends on the bottleneck.
        """
        skips = []
        for name, layer in self.encoder.named_children():
            x = layer(x)
            if name in SKIP_LAYERS:
                skips.append(x)
        return x, skips[::-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1] -> depth in target space, (B, 1, H/8, W/8) or (B, 1, H/2, W/2)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an input of shape (B, 3, H, W), got {tuple(x.shape)}")
        if self.downsample:
            x = F.max_pool2d(x, INPUT_POOL)  # (B, 3, H/4, W/4)
        if self.input_mean is not None:  # after pooling, which an increasing per-channel map commutes with
            x = (x - self.input_mean) / self.input_std
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            bottleneck, skips = self.encode(x)
        x = self.conv2(F.relu(bottleneck))  # (B, 1664 or 832, H'/32, W'/32)
        for block, skip in zip(self.up, skips):
            x = block(x, skip)
        with torch.autocast(x.device.type, enabled=False):  # the output in fp32: bf16 would round it in 0.4 % steps
            return self.conv3(x.float())  # (B, 1, H'/2, W'/2)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a network and use its outputs, as a model file records it (`depthcore.inference`).

    Input scaling: x / 255, then ImageNet's mean and std when `imagenet_normalize`. Output resolution: 1/8 of the
    input with `downsample`, 1/2 without (`output_stride`). Outputs are in `target` space (`depthcore.loss`), read
    back as metres within [min_depth, max_depth].
    """

    downsample: bool  # MaxPool2d(4) on the input first
    decoder: str  # a DECODER_CHANNELS key
    upsampling: str  # an UPSAMPLING mode
    imagenet_normalize: bool  # ImageNet mean and std applied inside the network
    bn_eps: float  # epsilon of every encoder BatchNorm
    target: str  # "depthnorm" (max_depth / depth) or "metres"
    min_depth: float  # metres
    max_depth: float  # metres

    @classmethod
    def from_config(cls, config: Config) -> ModelSpec:
        """The spec of the network that `config`'s model and loss params train."""
        m, loss = config.model, config.loss
        return cls(downsample=m.downsample, decoder=m.decoder, upsampling=m.upsampling,
                   imagenet_normalize=m.pretrained, bn_eps=TORCHVISION_BN_EPS, target=loss.target,
                   min_depth=loss.min_depth, max_depth=loss.max_depth)

    def differences(self, config: Config) -> list[str]:
        """"<dotted key>: trained with X, params.yaml says Y" for each param that says otherwise of this network or
        of what its outputs mean (input normalisation and BatchNorm epsilon are the weights' own)."""
        wanted = ModelSpec.from_config(config)
        keys = {"downsample": "model", "decoder": "model", "upsampling": "model", "target": "loss",
                "min_depth": "loss", "max_depth": "loss"}
        return [
            f"{section}.{key}: trained with {getattr(self, key)!r}, params.yaml says {getattr(wanted, key)!r}"
            for key, section in keys.items()
            if getattr(self, key) != getattr(wanted, key)
        ]


def output_stride(downsample: bool) -> int:
    """Input pixels per output pixel along each side: 8 with the input pooling (Table 1), 2 without (the paper)."""
    return 2 * (INPUT_POOL if downsample else 1)


def pretrained_weights_path() -> Path:
    """Where torchvision caches the ImageNet DenseNet-169 file: $TORCH_HOME/hub/checkpoints/densenet169-b2777c0a.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(PRETRAINED_WEIGHTS.url).name


def load_pretrained_encoder(encoder: nn.Module) -> None:
    """Load the ImageNet weights into `encoder` (torchvision's densenet169 `features`), downloading them if not cached.

    The file's SHA-256 must begin with PRETRAINED_SHA256_PREFIX, whether it was cached or downloaded (torchvision's
    own check on download). Raises `PretrainedWeightsUnavailable` when the file is neither cached nor downloadable, or
    is another file; never falls back silently.
    """
    path = pretrained_weights_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(
                PRETRAINED_WEIGHTS.url, str(path), hash_prefix=PRETRAINED_SHA256_PREFIX, progress=True
            )
        except Exception as err:  # any failure to fetch ends the same way, with its cause kept
            raise PretrainedWeightsUnavailable(
                f"pretrained DenseNet-169 weights not found: expected {path.name} in {path.parent}, and downloading "
                f"{PRETRAINED_WEIGHTS.url} failed ({type(err).__name__}: {err}). Either put {path.name} in "
                f"{path.parent} (or point TORCH_HOME at a directory whose hub/checkpoints holds it), or set "
                "model.pretrained=false to train from random weights."
            ) from err
    _verify_weights_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {}
    for key, value in state.items():
        if key.startswith("features."):
            features[_LEGACY_KEY.sub(r"\1\2", key.removeprefix("features."))] = value
    encoder.load_state_dict(features)


def _verify_weights_file(path: Path) -> None:
    """Raise `PretrainedWeightsUnavailable` unless the SHA-256 of `path` begins with PRETRAINED_SHA256_PREFIX."""
    found = sha256_file(path)
    if not found.startswith(PRETRAINED_SHA256_PREFIX):
        raise PretrainedWeightsUnavailable(
            f"{path} is not torchvision's ImageNet DenseNet-169 file: its SHA-256 is {found}, expected "
            f"one beginning with {PRETRAINED_SHA256_PREFIX}. Delete it and download {PRETRAINED_WEIGHTS.url} again "
            "(or set model.pretrained=false)."
        )
