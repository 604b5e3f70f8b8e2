"""ResNet encoders over N input channels, with optional local torchvision weights.

The encoder returns the five feature maps Monodepth2's decoders consume: after the stem
(1/2), ``layer1`` (1/4), ``layer2`` (1/8), ``layer3`` (1/16) and ``layer4`` (1/32, or 1/16
when the last stage is dilated as in DeepLab's output-stride-16 backbone).

Inputs are normalised as ``(x - 0.45) / 0.225`` (Monodepth2, not ImageNet statistics).

Pretrained weights are read from LOCAL files in torchvision's state-dict format -- an
ImageNet ``resnet18``/``resnet50`` checkpoint, or a ``deeplabv3_resnet50`` checkpoint whose
``backbone.*`` entries are used. Nothing is downloaded. For an N-channel input, the RGB
filters of ``conv1`` are repeated for each image and divided by the number of images, and an
extra depth channel receives the channel-mean of the RGB filter, divided the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

ENCODER_CHANNELS = {
    "resnet18": [64, 64, 128, 256, 512],
    "resnet50": [64, 256, 512, 1024, 2048],
}
NORMALISATION_MEAN = 0.45
NORMALISATION_STD = 0.225


class PretrainedWeightsError(ValueError):
    """A local weight file is missing, unreadable or does not match the architecture."""


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained weight file {path} does not exist (weights are never downloaded; "
            f"point the config at a local torchvision state-dict file or leave it empty)"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PretrainedWeightsError(f"cannot read weights from {path}: {error}") from error
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise PretrainedWeightsError(f"{path} is not a torchvision state dict (name -> tensor)")
    return data


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Widen ImageNet ``conv1`` weights ``(64, 3, 7, 7)`` to ``in_channels`` inputs.

    ``in_channels = 3 * n`` repeats the RGB filters n times and divides by n; one extra
    channel (``3 * n + 1``, the depth input) gets the mean RGB filter divided by n.
    """
    if weight.shape[1] != 3:
        raise PretrainedWeightsError(f"expected RGB conv1 weights, got shape {tuple(weight.shape)}")
    images, extra = divmod(in_channels, 3)
    if images == 0 or extra > 1:
        raise PretrainedWeightsError(f"cannot adapt conv1 to {in_channels} input channels")
    parts = [weight] * images
    if extra:
        parts.append(weight.mean(dim=1, keepdim=True))
    return torch.cat(parts, dim=1) / images


class ResnetEncoder(nn.Module):
    """ResNet18/50 feature pyramid over ``in_channels`` inputs.

    Args:
        name: ``"resnet18"`` or ``"resnet50"``.
        in_channels: 3 for one image, 7 for (source RGB, target RGB, depth).
        dilate_last: dilate ``layer4`` instead of striding it (output stride 16, DeepLab style).
    """

    def __init__(self, name: str, in_channels: int = 3, dilate_last: bool = False):
        super().__init__()
        if name not in ENCODER_CHANNELS:
            raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODER_CHANNELS)}")
        if dilate_last and name != "resnet50":
            raise ValueError("a dilated last stage is only used for the resnet50 (DeepLab) backbone")
        builder = getattr(torchvision.models, name)
        kwargs = {"replace_stride_with_dilation": [False, False, True]} if dilate_last else {}
        resnet = builder(weights=None, **kwargs)
        if in_channels != 3:
            resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.name = name
        self.in_channels = in_channels
        self.channels = list(ENCODER_CHANNELS[name])
        self.reductions = [2, 4, 8, 16, 16 if dilate_last else 32]
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - NORMALISATION_MEAN) / NORMALISATION_STD
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]

    def load_pretrained(self, path: str | Path) -> None:
        """Initialise from a local torchvision ResNet or DeepLabV3-ResNet50 state dict."""
        state = _read_state_dict(path)
        if any(k.startswith("backbone.") for k in state):
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" not in state:
            raise PretrainedWeightsError(f"{path} has no conv1.weight: not a ResNet state dict")
        if state["conv1.weight"].shape[1] != self.in_channels:
            state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], self.in_channels)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or mismatched:
            detail = "; ".join(
                f"{label}: {keys[:3]}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("shape mismatch", mismatched)) if keys
            )
            raise PretrainedWeightsError(f"{path} does not fit a {self.name} encoder: {detail}")
        self.load_state_dict(state)
