"""VGG-8 / VGG-11 with batch normalisation (Simonyan & Zisserman, 2015, "Very Deep
Convolutional Networks for Large-Scale Image Recognition"), CIFAR variant.

Module names follow the RepDistiller-derived ``vgg`` of CMI and Fast-Datafree (their
``vgg8``/``vgg11`` registry entries are the BN variants): five conv stages ``block0..block4``
(each ``conv, bn, relu, ..., conv, bn``: the stage's last ReLU is applied in ``forward``),
pooling modules ``pool0..pool4`` and a single linear ``classifier`` on 512 features.

Pooling quirk kept for checkpoint fidelity: ``pool0..pool2`` always halve the resolution, but
``pool3`` is only applied for inputs of 64 pixels or more (32x32 CIFAR images reach ``block4``
at 4x4, 64x64 Tiny-ImageNet images too); ``pool4`` is a global average pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["VGG", "VGG8", "VGG11"]

VGG8_STAGES: tuple[tuple[int, ...], ...] = ((64,), (128,), (256,), (512,), (512,))
VGG11_STAGES: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))


def _conv_stage(widths: Sequence[int], in_channels: int) -> nn.Sequential:
    """``conv3x3, BN, ReLU`` per width, without the trailing ReLU."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """VGG with batch norm, five conv stages and one linear classifier."""

    feature_dim = 512

    def __init__(
        self,
        stages: Sequence[Sequence[int]],
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(stages) != 5:
            raise ConfigError(f"VGG needs exactly 5 stages, got {len(stages)}")
        channels = in_channels
        for index, widths in enumerate(stages):
            self.add_module(f"block{index}", _conv_stage(widths, channels))
            channels = widths[-1]
        for index in range(4):
            self.add_module(f"pool{index}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits, or ``(logits, features)`` with the pooled 512-d vector."""
        size = x.shape[-1]
        out = self.pool0(F.relu(self.block0(x)))
        out = self.pool1(F.relu(self.block1(out)))
        out = self.pool2(F.relu(self.block2(out)))
        out = F.relu(self.block3(out))
        if size >= 64:
            out = self.pool3(out)
        out = F.relu(self.block4(out))
        features = torch.flatten(self.pool4(out), 1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


class VGG8(VGG):
    """VGG-8 with BN: one conv per stage (about 3.92M parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(VGG8_STAGES, num_classes=num_classes, in_channels=in_channels)


class VGG11(VGG):
    """VGG-11 with BN, configuration A (about 9.2M parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(VGG11_STAGES, num_classes=num_classes, in_channels=in_channels)
