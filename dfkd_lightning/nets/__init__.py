"""Classifier zoo (plain PyTorch) and checkpoint loading.

Module names match the Fast-Datafree / CMI classifiers so their teacher checkpoints load as
they are; see :mod:`dfkd_lightning.nets.checkpoint`.
"""

from dfkd_lightning.nets.checkpoint import (
    CheckpointMismatchError,
    CheckpointNotFoundError,
    load_classifier_weights,
)
from dfkd_lightning.nets.generator import Generator
from dfkd_lightning.nets.lenet import LeNet5, LeNet5BN, LeNet5Half, LeNet5HalfBN
from dfkd_lightning.nets.mlp import MLPRegressor
from dfkd_lightning.nets.registry import CLASSIFIERS, available_classifiers, build_classifier
from dfkd_lightning.nets.resnet import ResNet18, ResNet34
from dfkd_lightning.nets.resnet_tiny import ResNet8, ResNet20
from dfkd_lightning.nets.vgg import VGG8, VGG11
from dfkd_lightning.nets.wrn import WRN16_1, WRN16_2, WRN40_1, WRN40_2

__all__ = [
    "CLASSIFIERS",
    "VGG8",
    "VGG11",
    "WRN16_1",
    "WRN16_2",
    "WRN40_1",
    "WRN40_2",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "Generator",
    "LeNet5",
    "LeNet5BN",
    "LeNet5Half",
    "LeNet5HalfBN",
    "MLPRegressor",
    "ResNet8",
    "ResNet18",
    "ResNet20",
    "ResNet34",
    "available_classifiers",
    "build_classifier",
    "load_classifier_weights",
]
