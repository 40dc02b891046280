"""CIFAR ResNet-18/34 (He et al., 2016, "Deep Residual Learning for Image Recognition").

The layout follows the CIFAR variant used by DAFL, CMI and Fast-Datafree (3x3 stem without
max-pooling, four stages of 64/128/256/512 channels), so their published teacher checkpoints
load without renaming: ``conv1, bn1, layer1..layer4`` of basic blocks
(``conv1, bn1, conv2, bn2, shortcut.0, shortcut.1``) and a final ``linear`` layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "ResNet18", "ResNet34"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection shortcut when needed)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with a CIFAR stem; global average pooling makes it work for any input size."""

    feature_dim = 512

    def __init__(
        self, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = (64, 128, 256, 512)
        in_planes = 64
        for index, (width, blocks) in enumerate(zip(widths, num_blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers = []
            for block_index in range(blocks):
                layers.append(BasicBlock(in_planes, width, stride if block_index == 0 else 1))
                in_planes = width
            self.add_module(f"layer{index + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(self.feature_dim, num_classes)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits, or ``(logits, features)`` with the pooled 512-d penultimate vector."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.linear(features)
        return (logits, features) if return_features else logits


class ResNet18(CifarResNet):
    """CIFAR ResNet-18 (about 11.2M parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__((2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels)


class ResNet34(CifarResNet):
    """CIFAR ResNet-34 (about 21.3M parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__((3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels)
