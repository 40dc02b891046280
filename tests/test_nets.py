"""Shapes, sizes and module names of the classifier zoo."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dfkd_lightning.nets import (
    MLPRegressor,
    available_classifiers,
    build_classifier,
)

FEATURE_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet8": 64,
    "resnet20": 64,
    "wrn_16_1": 64,
    "wrn_16_2": 128,
    "wrn_40_1": 64,
    "wrn_40_2": 128,
    "vgg8": 512,
    "vgg11": 512,
    "lenet5": 120,
    "lenet5_half": 60,
    "lenet5_bn": 120,
    "lenet5_half_bn": 60,
}


def _channels(name: str) -> int:
    return 1 if name.startswith("lenet") else 3


def _num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_lists_every_classifier() -> None:
    assert available_classifiers() == sorted(FEATURE_DIMS)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="resnet99") as info:
        build_classifier("resnet99", num_classes=10)
    assert "wrn_40_2" in str(info.value) and "lenet5_half" in str(info.value)


@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_logits_and_features_32px(name: str) -> None:
    torch.manual_seed(0)
    channels = _channels(name)
    net = build_classifier(name, num_classes=7, in_channels=channels).eval()
    x = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        logits = net(x)
        logits_again, features = net(x, return_features=True)
    assert logits.shape == (2, 7)
    assert features.shape == (2, FEATURE_DIMS[name])
    assert net.feature_dim == FEATURE_DIMS[name]
    torch.testing.assert_close(logits, logits_again)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if name.startswith("lenet"):  # DAFL's LeNet features are the conv3 vector before fc1
        torch.testing.assert_close(linears[1](torch.relu(linears[0](features))), logits)
    else:  # the pooled penultimate vector fed to the last linear layer
        torch.testing.assert_close(linears[-1](features), logits)


@pytest.mark.parametrize("name", ["resnet18", "resnet8", "wrn_16_2", "vgg11"])
def test_logits_and_features_64px(name: str) -> None:
    net = build_classifier(name, num_classes=200).eval()
    with torch.no_grad():
        logits, features = net(torch.randn(2, 3, 64, 64), return_features=True)
    assert logits.shape == (2, 200)
    assert features.shape == (2, FEATURE_DIMS[name])


def test_in_channels_is_honoured() -> None:
    net = build_classifier("resnet8", num_classes=10, in_channels=1)
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    lenet = build_classifier("lenet5", num_classes=10, in_channels=3)
    assert lenet(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet34", 21.28e6), ("wrn_40_2", 2.24e6), ("resnet18", 11.17e6), ("resnet20", 0.27e6)],
)
def test_parameter_counts(name: str, expected: float) -> None:
    count = _num_params(build_classifier(name, num_classes=10))
    assert abs(count - expected) / expected < 0.03, count


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        (
            "resnet34",
            [
                "conv1.weight",
                "bn1.running_mean",
                "layer2.0.shortcut.0.weight",
                "layer2.0.shortcut.1.running_var",
                "layer4.2.conv2.weight",
                "linear.weight",
            ],
        ),
        (
            "wrn_40_2",
            [
                "conv1.weight",
                "block1.layer.0.convShortcut.weight",
                "block3.layer.5.conv2.weight",
                "block2.layer.3.bn2.weight",
                "bn1.weight",
                "fc.weight",
            ],
        ),
        (
            "vgg11",
            ["block0.0.weight", "block0.1.running_mean", "block4.3.weight", "classifier.weight"],
        ),
        ("resnet20", ["layer2.0.downsample.0.weight", "layer3.2.bn2.weight", "fc.weight"]),
        ("lenet5", ["conv1.weight", "conv3.bias", "fc1.weight", "fc2.bias"]),
    ],
)
def test_fast_datafree_key_names(name: str, keys: list[str]) -> None:
    state = build_classifier(name, num_classes=10, in_channels=_channels(name)).state_dict()
    for key in keys:
        assert key in state, key


def test_wrn_16_1_has_no_shortcut_in_first_group() -> None:
    state = build_classifier("wrn_16_1", num_classes=10).state_dict()
    assert not any(k.startswith("block1.") and "convShortcut" in k for k in state)
    assert "block2.layer.0.convShortcut.weight" in state


def test_mlp_regressor_shapes() -> None:
    mlp = MLPRegressor(in_features=8)
    prediction, features = mlp(torch.randn(4, 8), return_features=True)
    assert prediction.shape == (4, 1) and features.shape == (4, 500)
    assert features.abs().max() <= 1.0  # tanh

    deep = MLPRegressor(in_features=12, out_features=3, hidden=(32, 16), activation="relu")
    assert deep(torch.randn(5, 3, 4)).shape == (5, 3)
    assert deep(torch.randn(5, 12), return_features=True)[1].shape == (5, 16)

    linear = MLPRegressor(in_features=6, hidden=())
    assert linear(torch.randn(2, 6), return_features=True)[1].shape == (2, 6)


def test_mlp_regressor_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="swish"):
        MLPRegressor(in_features=4, activation="swish")
