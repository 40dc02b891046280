"""Name -> constructor table for the classifier zoo."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets.lenet import LeNet5, LeNet5BN, LeNet5Half, LeNet5HalfBN
from dfkd_lightning.nets.resnet import ResNet18, ResNet34
from dfkd_lightning.nets.resnet_tiny import ResNet8, ResNet20
from dfkd_lightning.nets.vgg import VGG8, VGG11
from dfkd_lightning.nets.wrn import WRN16_1, WRN16_2, WRN40_1, WRN40_2

__all__ = ["CLASSIFIERS", "available_classifiers", "build_classifier"]

#: Every constructor takes ``(num_classes: int, in_channels: int)``.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet8": ResNet8,
    "resnet20": ResNet20,
    "wrn_16_1": WRN16_1,
    "wrn_16_2": WRN16_2,
    "wrn_40_1": WRN40_1,
    "wrn_40_2": WRN40_2,
    "vgg8": VGG8,
    "vgg11": VGG11,
    "lenet5": LeNet5,
    "lenet5_half": LeNet5Half,
    "lenet5_bn": LeNet5BN,
    "lenet5_half_bn": LeNet5HalfBN,
}


def available_classifiers() -> list[str]:
    """Sorted names accepted by :func:`build_classifier`."""
    return sorted(CLASSIFIERS)


def build_classifier(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Instantiate the classifier registered as ``name``.

    Raises:
        ValueError: if ``name`` is not registered (the message lists the valid names).
    """
    try:
        constructor = CLASSIFIERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown classifier {name!r}; available: {', '.join(available_classifiers())}"
        ) from None
    return constructor(num_classes=num_classes, in_channels=in_channels)
