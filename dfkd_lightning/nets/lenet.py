"""LeNet-5 and LeNet-5-half (LeCun et al., 1998, "Gradient-Based Learning Applied to Document
Recognition") as used for MNIST by DAFL (Chen et al., 2019) on 32x32 inputs.

LeNet-5: conv 6@5x5, ReLU, max-pool 2, conv 16@5x5, ReLU, max-pool 2, conv 120@5x5, ReLU,
fc 84, ReLU, fc ``num_classes``. The half version uses 3/8/60/42 units. Module names are DAFL's
(``conv1, relu1, maxpool1, conv2, relu2, maxpool2, conv3, relu3, fc1, relu4, fc2``). Checkpoints
from the ``features.<i>`` / ``fc.<i>`` Sequential layout found in some Fast-Datafree forks are
translated by :func:`dfkd_lightning.nets.checkpoint.load_classifier_weights` through
``checkpoint_key_aliases``.

At 32x32 the ``conv3`` output is 1x1; larger inputs are globally averaged to the same vector.

``LeNet5BN`` / ``LeNet5HalfBN`` (``lenet5_bn``, ``lenet5_half_bn``) add a BatchNorm layer after
each convolution (``bn1``-``bn3``): the teacher the BN-statistics methods (DeepInversion, CMI,
FastDFKD, DFQ) need, since their prior matches the teacher's BN running statistics.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LeNet5", "LeNet5BN", "LeNet5Half", "LeNet5HalfBN"]


class _LeNet(nn.Module):
    """Three convolutions and two fully connected layers with configurable widths."""

    #: Old key prefix -> our key prefix, applied when a checkpoint's keys do not match ours.
    checkpoint_key_aliases: ClassVar[dict[str, str]] = {
        "features.0.": "conv1.",
        "features.3.": "conv2.",
        "features.6.": "conv3.",
        "fc.0.": "fc1.",
        "fc.2.": "fc2.",
    }

    def __init__(
        self,
        widths: tuple[int, int, int, int],
        num_classes: int = 10,
        in_channels: int = 1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        c1, c2, c3, hidden = widths
        self.feature_dim = c3
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=5)
        self.bn1 = nn.BatchNorm2d(c1) if batch_norm else nn.Identity()
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5)
        self.bn2 = nn.BatchNorm2d(c2) if batch_norm else nn.Identity()
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=5)
        self.bn3 = nn.BatchNorm2d(c3) if batch_norm else nn.Identity()
        self.relu3 = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(c3, hidden)
        self.relu4 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits, or ``(logits, features)`` with the ``conv3`` activation vector."""
        out = self.maxpool1(self.relu1(self.bn1(self.conv1(x))))
        out = self.maxpool2(self.relu2(self.bn2(self.conv2(out))))
        out = self.relu3(self.bn3(self.conv3(out)))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc2(self.relu4(self.fc1(features)))
        return (logits, features) if return_features else logits


class LeNet5(_LeNet):
    """LeNet-5 (6/16/120/84 units, 120-d features); expects 32x32 inputs or larger."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__((6, 16, 120, 84), num_classes=num_classes, in_channels=in_channels)


class LeNet5Half(_LeNet):
    """LeNet-5-half, the DAFL MNIST student (3/8/60/42 units, 60-d features)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__((3, 8, 60, 42), num_classes=num_classes, in_channels=in_channels)


class LeNet5BN(_LeNet):
    """LeNet-5 with BatchNorm after each convolution (a teacher for BN-statistics methods)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__(
            (6, 16, 120, 84), num_classes=num_classes, in_channels=in_channels, batch_norm=True
        )


class LeNet5HalfBN(_LeNet):
    """LeNet-5-half with BatchNorm after each convolution."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__(
            (3, 8, 60, 42), num_classes=num_classes, in_channels=in_channels, batch_norm=True
        )
