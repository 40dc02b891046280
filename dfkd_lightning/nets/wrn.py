"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis, 2016, "Wide Residual Networks").

Pre-activation blocks, three groups of 16k/32k/64k channels, ``(d - 4) / 6`` blocks per
group. Module names follow the ZeroShotKnowledgeTransfer-derived ``wresnet`` of CMI and
Fast-Datafree: ``conv1``, ``block1..block3.layer.<i>.{bn1, relu1, conv1, bn2, relu2, conv2,
convShortcut}``, final ``bn1`` and ``fc``.

Layout quirk kept for checkpoint fidelity: when a block changes the width, the pre-activation
``relu1(bn1(x))`` also feeds the 1x1 ``convShortcut``; when it keeps the width, the identity
path carries the raw input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["WRN16_1", "WRN16_2", "WRN40_1", "WRN40_2", "WideBasicBlock", "WideResNet"]


class WideBasicBlock(nn.Module):
    """Pre-activation basic block with optional dropout between the two convolutions."""

    def __init__(
        self, in_planes: int, out_planes: int, stride: int, dropout_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout_rate)
        self.equal_in_out = in_planes == out_planes
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        out = self.conv2(self.dropout(out))
        shortcut = x if self.equal_in_out else self.convShortcut(pre)
        return shortcut + out


class NetworkBlock(nn.Module):
    """A group of wide blocks stored under ``.layer`` (the first one may downsample)."""

    def __init__(
        self, num_layers: int, in_planes: int, out_planes: int, stride: int, dropout_rate: float
    ) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasicBlock(
                    in_planes if i == 0 else out_planes,
                    out_planes,
                    stride if i == 0 else 1,
                    dropout_rate,
                )
                for i in range(num_layers)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN of depth ``d = 6n + 4`` and widen factor ``k``; global average pooling at the end."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"WRN depth must be 6n + 4 (e.g. 16, 28, 40), got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.feature_dim = widths[3]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, dropout_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, dropout_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, dropout_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits, or ``(logits, features)`` with the pooled ``64k``-d vector."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        features = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


class WRN16_1(WideResNet):
    """WRN-16-1 (about 0.18M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(16, 1, num_classes=num_classes, in_channels=in_channels)


class WRN16_2(WideResNet):
    """WRN-16-2 (about 0.70M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(16, 2, num_classes=num_classes, in_channels=in_channels)


class WRN40_1(WideResNet):
    """WRN-40-1 (about 0.57M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(40, 1, num_classes=num_classes, in_channels=in_channels)


class WRN40_2(WideResNet):
    """WRN-40-2 (about 2.2M parameters)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(40, 2, num_classes=num_classes, in_channels=in_channels)
