"""Thin CIFAR ResNets (ResNet-8/20) of He et al. (2016), Section 4.2.

Three stages of 16/32/64 channels with ``n`` basic blocks each (depth ``6n + 2``). Module
names follow the RepDistiller-derived ``resnet_tiny`` used by CMI and Fast-Datafree:
``conv1, bn1, layer1..layer3`` of blocks (``conv1, bn1, conv2, bn2, downsample.0/1``) and
``fc``. Those repos pool with a fixed 8x8 average pool; here the pooling is global, which is
identical at 32x32 and also works for other input sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["ResNet8", "ResNet20", "ThinResNet", "TinyBasicBlock"]


class TinyBasicBlock(nn.Module):
    """Basic residual block whose projection shortcut is called ``downsample``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ThinResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` with 16/32/64 channels."""

    feature_dim = 64

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ConfigError(f"depth must be 6n + 2 (e.g. 8, 20, 32), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        in_planes = 16
        for index, width in enumerate((16, 32, 64)):
            stride = 1 if index == 0 else 2
            layers = []
            for block_index in range(blocks):
                layers.append(TinyBasicBlock(in_planes, width, stride if block_index == 0 else 1))
                in_planes = width
            self.add_module(f"layer{index + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits, or ``(logits, features)`` with the pooled 64-d penultimate vector."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


class ResNet8(ThinResNet):
    """ResNet-8 for CIFAR (one block per stage, about 78K parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(8, num_classes=num_classes, in_channels=in_channels)


class ResNet20(ThinResNet):
    """ResNet-20 for CIFAR (three blocks per stage, about 0.27M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(20, num_classes=num_classes, in_channels=in_channels)
