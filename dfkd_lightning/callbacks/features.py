"""Feature extractors for FID/KID of synthetic images: the teacher's penultimate features
("teacher-FID", always available offline), torchmetrics' Inception (torch-fidelity and its
weights file) or a torchvision model with local weights.

Each maps images in [0, 1] at the network's input size, ``(N, C, H, W)`` floats, to
``(N, D)`` float features, without gradients and in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError, MissingFileError

__all__ = [
    "INCEPTION_URL",
    "FeatureKind",
    "TeacherFeatures",
    "build_feature_extractor",
    "inception_weights_path",
]

FeatureKind = Literal["teacher", "inception", "torchvision"]
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TeacherFeatures(nn.Module):
    """The teacher's penultimate features of ``normalize(images)``. The teacher is held by
    reference (not a submodule: a metric moving or casting its modules leaves it alone)."""

    def __init__(self, teacher: nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.__dict__["teacher"] = teacher
        self.normalize = normalize

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        teacher: nn.Module = self.__dict__["teacher"]
        was_training = teacher.training
        teacher.eval()
        try:
            _, features = teacher(self.normalize(images.float()), return_features=True)
        finally:
            teacher.train(was_training)
        return features.flatten(1).float()


class _ThreeChannels(nn.Module):
    """Repeat a grey channel to RGB, then an ImageNet network's features."""

    def __init__(self, net: nn.Module, uint8: bool, normalize: bool) -> None:
        super().__init__()
        self.net, self.uint8, self.normalize = net, uint8, normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.uint8:
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        elif self.normalize:
            x = F.interpolate(x, size=224, mode="bilinear", align_corners=False)
            x = (x - self.mean) / self.std
        return self.net(x).flatten(1).float()


def inception_weights_path(weights: str | None = None) -> Path:
    """The Inception weights file (``weights``, else torch hub's cache); an error saying
    where to put it when it is missing (no download is attempted)."""
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not path.is_file():
        raise MissingFileError(
            f"FID/KID with Inception features needs torch-fidelity's weights file at {path}; "
            f"download {INCEPTION_URL} there on a machine with internet (or pass "
            "SampleQuality(weights=<file>)), or use feature: teacher (offline, always available)"
        )
    try:  # torch-fidelity unpickles the file; refuse anything but tensors first
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(
            f"{path} is not a file of tensors that loads with weights_only=True ({error}); "
            f"use the weights file from {INCEPTION_URL}"
        ) from None
    return path


def _inception(weights: str | None) -> nn.Module:
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as error:  # pragma: no cover - torchmetrics is a dependency
        raise ConfigError(str(error)) from None
    path = inception_weights_path(weights)
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(path),
        )
    except ModuleNotFoundError:
        raise ConfigError(
            "FID/KID with Inception features needs torch-fidelity: pip install "
            "'dfkd-lightning[fid]' (or pip install torch-fidelity), or use feature: teacher"
        ) from None
    return _ThreeChannels(net, uint8=True, normalize=False)


def _torchvision(name: str | None, weights: str | None) -> nn.Module:
    import torchvision

    if not name or not weights:
        raise ConfigError(
            "feature: torchvision needs torchvision_model (e.g. resnet18) and weights (a local "
            "state dict file of that model)"
        )
    if not Path(weights).is_file():
        raise MissingFileError(f"torchvision weights file {weights} does not exist")
    net = torchvision.models.get_model(name, weights=None)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(net, head):
            setattr(net, head, nn.Identity())
            break
    return _ThreeChannels(net.eval(), uint8=False, normalize=True)


def build_feature_extractor(
    kind: FeatureKind,
    input_shape: tuple[int, ...],
    teacher: nn.Module | None = None,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights: str | None = None,
    torchvision_model: str | None = None,
) -> nn.Module:
    """The extractor of ``kind`` for images of ``input_shape`` (``teacher`` needs the teacher
    and its normalisation), with its feature count in ``num_features`` (what torchmetrics
    reads)."""
    if kind == "teacher":
        if teacher is None or normalize is None:
            raise ConfigError("teacher features need a data-free method's teacher")
        extractor: nn.Module = TeacherFeatures(teacher, normalize)
        reference = teacher
    elif kind == "inception":
        extractor = reference = _inception(weights)
    elif kind == "torchvision":
        extractor = reference = _torchvision(torchvision_model, weights)
    else:
        raise ConfigError(f"feature must be 'teacher', 'inception' or 'torchvision', got {kind!r}")
    parameter = next(reference.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    probe = extractor(torch.rand(2, *input_shape, device=device))
    extractor.num_features = int(probe.shape[1])
    return extractor
