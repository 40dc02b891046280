"""Loading classifier weights from Fast-Datafree, Lightning and raw state-dict files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dfkd_lightning.nets import (
    CheckpointMismatchError,
    build_classifier,
    load_classifier_weights,
)
from dfkd_lightning.nets.checkpoint import CheckpointNotFoundError


def _trained_like(name: str, num_classes: int = 10, seed: int = 1) -> nn.Module:
    """A net with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = build_classifier(name, num_classes=num_classes, in_channels=_channels(name))
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1.0, 0.1)
            module.bias.data.normal_(0.0, 0.1)
    return net.eval()


def _channels(name: str) -> int:
    return 1 if name.startswith("lenet") else 3


def _fresh(name: str, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(123)
    return build_classifier(name, num_classes=num_classes, in_channels=_channels(name)).eval()


def _assert_same_function(a: nn.Module, b: nn.Module, channels: int = 3) -> None:
    x = torch.randn(3, channels, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "lenet5_half"])
@pytest.mark.parametrize("dataparallel", [False, True])
def test_fast_datafree_format(tmp_path: Path, name: str, dataparallel: bool) -> None:
    source = _trained_like(name)
    state = source.state_dict()
    if dataparallel:
        state = _prefixed(state, "module.")
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": state, "epoch": 3, "best_acc": 0.9}, path)

    target = _fresh(name)
    assert load_classifier_weights(target, path) is target
    _assert_same_function(source, target, _channels(name))


def test_raw_state_dict_and_str_path(tmp_path: Path) -> None:
    source = _trained_like("resnet20")
    path = tmp_path / "raw.pt"
    torch.save(source.state_dict(), path)
    target = load_classifier_weights(_fresh("resnet20"), str(path))
    _assert_same_function(source, target)


def test_missing_batchnorm_counters_are_tolerated(tmp_path: Path) -> None:
    source = _trained_like("resnet8")
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    _assert_same_function(source, load_classifier_weights(_fresh("resnet8"), path))


def test_lightning_teacher_checkpoint(tmp_path: Path) -> None:
    source = _trained_like("wrn_16_1")
    path = tmp_path / "teacher.ckpt"
    checkpoint = {
        "state_dict": _prefixed(source.state_dict(), "net."),
        "pytorch-lightning_version": "2.4.0",
        "epoch": 3,
        "global_step": 120,
        "hyper_parameters": {"arch": "wrn_16_1", "num_classes": 10, "lr": 0.1},
    }
    torch.save(checkpoint, path)
    _assert_same_function(source, load_classifier_weights(_fresh("wrn_16_1"), path))


def test_distillation_checkpoint_student_default_teacher_by_prefix(tmp_path: Path) -> None:
    student, teacher = _trained_like("resnet8", seed=2), _trained_like("resnet20", seed=3)
    generator = nn.Linear(4, 4)
    state = {
        **_prefixed(teacher.state_dict(), "teacher."),
        **_prefixed(student.state_dict(), "student."),
        **_prefixed(generator.state_dict(), "generator."),
    }
    path = tmp_path / "distill.ckpt"
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0"}, path)

    _assert_same_function(student, load_classifier_weights(_fresh("resnet8"), path))
    for prefix in ("teacher.", "teacher"):
        loaded = load_classifier_weights(_fresh("resnet20"), path, prefix=prefix)
        _assert_same_function(teacher, loaded)

    with pytest.raises(CheckpointMismatchError, match="'teacher.'"):
        load_classifier_weights(_fresh("resnet20"), path)  # auto picks no prefix: say which


def test_same_arch_distillation_checkpoint_loads_student(tmp_path: Path) -> None:
    student, teacher = _trained_like("resnet8", seed=2), _trained_like("resnet8", seed=3)
    state = {
        **_prefixed(teacher.state_dict(), "teacher."),
        **_prefixed(student.state_dict(), "student."),
    }
    path = tmp_path / "distill.ckpt"
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0"}, path)
    _assert_same_function(student, load_classifier_weights(_fresh("resnet8"), path))
    loaded = load_classifier_weights(_fresh("resnet8"), path, prefix="teacher.")
    _assert_same_function(teacher, loaded)


def test_unknown_explicit_prefix(tmp_path: Path) -> None:
    path = tmp_path / "raw.pt"
    torch.save(_prefixed(_trained_like("resnet8").state_dict(), "net."), path)
    with pytest.raises(CheckpointMismatchError, match="no keys starting with 'teacher.'") as info:
        load_classifier_weights(_fresh("resnet8"), path, prefix="teacher.")
    assert "'net.'" in str(info.value)


def test_lenet_sequential_layout_is_translated(tmp_path: Path) -> None:
    source = _trained_like("lenet5")
    renames = {"conv1.": "features.0.", "conv2.": "features.3.", "conv3.": "features.6."}
    renames |= {"fc1.": "fc.0.", "fc2.": "fc.2."}
    state = {}
    for key, value in source.state_dict().items():
        old = next(p for p in renames if key.startswith(p))
        state[renames[old] + key[len(old) :]] = value
    path = tmp_path / "lenet.pt"
    torch.save({"state_dict": state}, path)
    _assert_same_function(source, load_classifier_weights(_fresh("lenet5"), path), channels=1)


def test_class_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "cifar100.pth"
    torch.save({"state_dict": _trained_like("resnet8", num_classes=100).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_classifier_weights(_fresh("resnet8", num_classes=10), path)
    message = str(info.value)
    assert str(path) in message
    assert "100 classes (fc.weight [100, 64])" in message
    assert "num_classes=10" in message and "set num_classes=100" in message


def test_architecture_mismatch_resnet18_into_resnet34(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": build_classifier("resnet18", 10).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_classifier_weights(build_classifier("resnet34", 10), path)
    message = str(info.value)
    assert str(path) in message and "ResNet34" in message
    assert "missing keys" in message and "layer1.2." in message


def test_architecture_mismatch_same_keys_other_widths(tmp_path: Path) -> None:
    path = tmp_path / "wrn_16_1.pth"
    torch.save({"state_dict": build_classifier("wrn_16_1", 10).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="different shapes") as info:
        load_classifier_weights(build_classifier("wrn_16_2", 10), path)
    assert "WRN16_2" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "teacher.pth"
    with pytest.raises(CheckpointNotFoundError, match="not found") as info:
        load_classifier_weights(_fresh("resnet8"), path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, CheckpointMismatchError)


def test_pickled_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(_fresh("resnet8"), path)
    with pytest.raises(CheckpointMismatchError, match="non-tensor objects") as info:
        load_classifier_weights(_fresh("resnet8"), path)
    assert "only state dicts are accepted" in str(info.value)


def test_file_without_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "best_acc": 0.9}, path)
    with pytest.raises(CheckpointMismatchError, match="no state dict"):
        load_classifier_weights(_fresh("resnet8"), path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="could not be read"):
        load_classifier_weights(_fresh("resnet8"), path)
