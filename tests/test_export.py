"""Export: synthetic sets to disk (ImageFolder PNGs, tensor shards) and back, the ExportPool
callback, students trained on an exported set and evaluated on real data, student export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import CONFIGS, QUIET, few_batches, quick_trainer, tiny_fake_args
from PIL import Image
from torch import nn
from torchvision.datasets import ImageFolder
from torchvision.transforms import PILToTensor

from dfkd_lightning.callbacks import ExportPool
from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.cli import main as dfkd_main
from dfkd_lightning.data import ClassificationDataModule, SyntheticSetDataModule
from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.export import (
    export_pool,
    export_student,
    load_exported,
    read_index,
    resize_images,
    teacher_labels,
)
from dfkd_lightning.methods import KnowledgeDistillation
from dfkd_lightning.methods.frozen_teacher import load_frozen_teacher
from dfkd_lightning.nets import build_classifier, load_classifier_weights
from dfkd_lightning.synthesis.pool import SyntheticPool

KD_BN = CONFIGS / "experiments/digits/kd_lenet5_bn_lenet5_half.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")


def _keep_mode(path: str) -> Image.Image:
    """An ImageFolder loader that keeps 1-channel PNGs 1-channel."""
    with Image.open(path) as image:
        return image.copy()


def _pool(storage: str, channels: int, n: int = 37, classes: int = 12) -> SyntheticPool:
    torch.manual_seed(channels)
    pool = SyntheticPool(storage=storage)
    images, targets = torch.rand(n, channels, 6, 5), torch.randint(0, classes, (n,))
    pool.add(images[:20], targets[:20])
    pool.add(images[20:], targets[20:])
    return pool


# ---------------------------------------------------------------------- formats
@pytest.mark.parametrize("channels", [1, 3])
def test_uint8_pool_round_trips_through_plain_imagefolder(channels: int, tmp_path: Path) -> None:
    pool = _pool("uint8", channels)
    export_pool(pool, tmp_path / "set", num_classes=12)
    stored = pool.images().mul(255).round().to(torch.uint8)  # the pool's own bytes
    order = torch.argsort(pool.targets(), stable=True)  # ImageFolder: by class, then file name

    dataset = ImageFolder(
        str(tmp_path / "set"), transform=PILToTensor(), loader=_keep_mode, allow_empty=True
    )
    assert dataset.classes == [f"{k:03d}" for k in range(12)]
    read = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    assert read.dtype == torch.uint8 and read.shape == (37, channels, 6, 5)
    assert torch.equal(read, stored[order])
    assert torch.equal(labels, pool.targets()[order])
    if channels == 1:  # torchvision's default loader makes RGB copies of the gray images
        rgb = ImageFolder(str(tmp_path / "set"), transform=PILToTensor(), allow_empty=True)
        assert torch.equal(torch.stack([rgb[i][0] for i in range(37)]), read.expand(-1, 3, -1, -1))

    images, targets = load_exported(tmp_path / "set")  # the exported (pool) order
    assert torch.equal(images, pool.images()) and torch.equal(targets, pool.targets())
    index = json.loads((tmp_path / "set/index.json").read_text())
    assert index["format"] == "imagefolder" and index["count"] == 37
    assert index["image_shape"] == [channels, 6, 5] and index["num_classes"] == 12
    assert index["dtype"] == "uint8" and index["quantized"] is False
    assert "ImageFolder" in index["how_to_read"]


def test_float_pool_shards_read_back_exactly_with_plain_torch_load(tmp_path: Path) -> None:
    pool = _pool("float32", 3, n=50)
    export_pool(pool, tmp_path / "set", format="shards", shard_size=16)
    index = json.loads((tmp_path / "set/index.json").read_text())
    assert index["format"] == "shards" and index["dtype"] == "float32"
    assert [entry["count"] for entry in index["shards"]] == [16, 16, 16, 2]
    load = lambda name: torch.load(tmp_path / "set" / name, weights_only=True)  # noqa: E731
    images = torch.cat([load(entry["images"]) for entry in index["shards"]])
    targets = torch.cat([load(entry["targets"]) for entry in index["shards"]])
    assert images.dtype == torch.float32 and targets.dtype == torch.int64
    assert torch.equal(images, pool.images()) and torch.equal(targets, pool.targets())
    assert all(
        torch.equal(a, b)
        for a, b in zip(load_exported(tmp_path / "set"), (images, targets), strict=True)
    )

    export_pool(pool, tmp_path / "png")  # PNG: quantised like a uint8 pool
    assert json.loads((tmp_path / "png/index.json").read_text())["quantized"] is True
    png, _ = load_exported(tmp_path / "png")
    assert torch.equal(png, pool.images().mul(255).round().div(255))


def test_unknown_targets_need_labels_and_exports_are_not_overwritten(tmp_path: Path) -> None:
    pool = SyntheticPool()
    pool.add(torch.rand(8, 1, 4, 4))  # synthesized for no class
    with pytest.raises(
        ConfigError, match=r"8 of the 8 images have no class target.*teacher_labels"
    ):
        export_pool(pool, tmp_path / "set")
    assert not (tmp_path / "set").exists()
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    labels = teacher_labels(teacher, pool, preprocess=lambda x: x - 0.5, batch_size=3)
    assert torch.equal(labels, teacher(pool.images() - 0.5).argmax(1))
    export_pool(pool, tmp_path / "set", labels, format="shards", num_classes=3)
    assert torch.equal(load_exported(tmp_path / "set")[1], labels)
    with pytest.raises(ConfigError, match="overwrite=True"):
        export_pool(pool, tmp_path / "set", labels)
    export_pool(pool, tmp_path / "set", labels, overwrite=True)  # replaced: now PNGs
    assert read_index(tmp_path / "set")["format"] == "imagefolder"
    assert not list((tmp_path / "set").glob("*.pt"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no exported set"):
        export_pool(pool, tmp_path / "other", labels, overwrite=True)


def test_per_rank_exports_read_together(tmp_path: Path) -> None:
    first, second = _pool("uint8", 1, n=5, classes=3), _pool("float16", 1, n=7, classes=3)
    export_pool(first, tmp_path / "set/rank_00", num_classes=3)
    export_pool(second, tmp_path / "set/rank_01", format="shards", num_classes=3)
    images, targets = load_exported(tmp_path / "set")
    assert torch.equal(images, torch.cat([first.images(), second.images()]))
    assert torch.equal(targets, torch.cat([first.targets(), second.targets()]))
    index = read_index(tmp_path / "set")
    assert index["format"] == "ranks" and index["count"] == 12 and index["num_classes"] == 3


# ---------------------------------------------------------------------- reuse for students
@pytest.fixture(scope="module")
def digits_set(digits_bn_teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real digits training images at their own 8x8, labelled by the teacher: a stand-in
    for a synthetic set made at the digits' size (as the digits configs synthesize)."""
    data = ClassificationDataModule("digits", channels=1, image_size=8, augment=False)
    data.setup("fit")
    assert data.train_set is not None
    images = torch.stack([data.train_set[i][0] for i in range(len(data.train_set))])
    real = torch.tensor([data.train_set[i][1] for i in range(len(data.train_set))])
    images = data.denormalize(images).clamp(0, 1)
    teacher = load_frozen_teacher("lenet5_bn", str(digits_bn_teacher_ckpt), 10, 1)
    labels = teacher_labels(teacher, images, lambda x: data.normalize(resize_images(x, 32)))
    assert (labels == real).float().mean() > 0.8  # the teacher's inputs were right
    directory = tmp_path_factory.mktemp("digits_set") / "synthetic"
    return export_pool(images, directory, labels, num_classes=10)


@pytest.fixture(scope="module")
def distilled(
    digits_set: Path, digits_bn_teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> SimpleNamespace:
    """A LeNet-5-half distilled from the exported set, tested on the real test split before
    and after."""
    L.seed_everything(0)
    data = SyntheticSetDataModule(
        dataset="digits", channels=1, image_size=32, batch_size=64, synthetic_dir=str(digits_set)
    )
    model = KnowledgeDistillation(
        teacher="lenet5_bn",
        student="lenet5_half",
        teacher_checkpoint=str(digits_bn_teacher_ckpt),
        num_classes=10,
        input_shape=data.input_shape,
        mean=data.mean,
        std=data.std,
        optimizer=lambda params: torch.optim.Adam(params, lr=5e-3),
    )
    root = tmp_path_factory.mktemp("kd_synthetic")
    before = quick_trainer(root, 1).test(model, datamodule=data, verbose=False)[0]["test/acc"]
    trainer = quick_trainer(root, max_epochs=4)
    trainer.fit(model, datamodule=data)
    after = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    checkpoint = root / "kd.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=False)
    return SimpleNamespace(model=model, data=data, before=before, after=after, ckpt=checkpoint)


def test_a_student_distilled_from_an_exported_set_learns(
    distilled: SimpleNamespace, digits_set: Path
) -> None:
    data = distilled.data
    assert len(data.train_set) == read_index(digits_set)["count"]
    image, _ = data.train_set[0]
    assert image.shape == (1, 32, 32)  # resized from the set's 8x8
    real = ClassificationDataModule("digits", channels=1)
    real.setup("test")
    assert len(data.test_set) == len(real.test_set)  # tested on the real test split
    assert distilled.before < 0.3
    assert distilled.after > 0.5 and distilled.after > distilled.before + 0.3, distilled.after


def test_synthetic_set_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs synthetic_dir"):
        SyntheticSetDataModule(dataset="digits")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="has no index.json"):
        SyntheticSetDataModule(dataset="digits", synthetic_dir=str(tmp_path / "empty")).setup("fit")
    export_pool(torch.rand(4, 3, 8, 8), tmp_path / "rgb", torch.arange(4), num_classes=10)
    with pytest.raises(ConfigError, match="3-channel images"):
        SyntheticSetDataModule(dataset="digits", synthetic_dir=str(tmp_path / "rgb")).setup("fit")
    export_pool(torch.rand(4, 1, 8, 8), tmp_path / "five", torch.arange(4), num_classes=5)
    with pytest.raises(ConfigError, match="5 classes"):
        SyntheticSetDataModule(
            dataset="digits", synthetic_dir=str(tmp_path / "five")
        ).prepare_data()


def test_command_line_trains_kd_on_an_exported_set(
    digits_set: Path, digits_bn_teacher_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(KD_BN),
            "--data",
            "dfkd_lightning.data.SyntheticSetDataModule",
            "--data.synthetic_dir",
            str(digits_set),
            "--data.dataset",
            "digits",
            "--model.init_args.teacher_checkpoint",
            str(digits_bn_teacher_ckpt),
            *QUIET,
            *few_batches(train=3, test=2),
        ]
    )
    data = cli.datamodule
    assert isinstance(data, SyntheticSetDataModule) and data.synthetic_dir == str(digits_set)
    assert data.batch_size == 64 and data.image_size == 32  # the config's settings are kept
    assert data.augment is False
    assert isinstance(cli.model, KnowledgeDistillation)
    assert "test/acc" in cli.trainer.callback_metrics  # tested on the real test split


# ---------------------------------------------------------------------- the callback
@pytest.mark.parametrize(
    ("method", "format"), [("deepinversion", "shards"), ("dafl", "imagefolder")]
)
def test_export_pool_callback_from_the_command_line(
    method: str, format: str, fake_teacher: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    cli = DFKDCLI(
        args=tiny_fake_args(
            method,
            fake_teacher,
            "--trainer.callbacks+=dfkd_lightning.callbacks.ExportPool",
            "--trainer.callbacks.format",
            format,
            "--trainer.callbacks.max_samples",
            "24",
            "--trainer.default_root_dir",
            str(tmp_path),
        )
    )
    [callback] = [cb for cb in cli.trainer.callbacks if isinstance(cb, ExportPool)]
    directory = tmp_path / "synthetic"
    assert callback.format == format and callback.written == [directory]
    index = read_index(directory)
    images, labels = load_exported(directory)
    assert index["format"] == format and index["num_classes"] == 10
    assert index["source"]["method"] == type(cli.model).__name__
    assert labels.min() >= 0 and labels.max() < 10
    if method == "deepinversion":  # the pool, at the synthesis size, with its targets
        pool = cli.model.pool
        assert index["dtype"] == "uint8" and images.shape == (len(pool), 1, 8, 8)
        assert torch.equal(images, pool.images("cpu"))
        assert torch.equal(labels, pool.targets("cpu"))
        checkpoint = tmp_path / "run.ckpt"
        cli.trainer.save_checkpoint(checkpoint, weights_only=False)
        again_dir = str(tmp_path / "again")
        dfkd_main(["export-pool", str(checkpoint), again_dir, "--format", "imagefolder"])
        again, again_labels = load_exported(tmp_path / "again")
        assert torch.equal(again, images) and torch.equal(again_labels, labels)
    else:  # no pool and no samples through the callbacks: drawn from the generator, labelled
        assert images.shape == (24, 1, 32, 32)  # by the teacher
        assert index["source"]["labels"] == "auto"
        generator = cli.model.synthesizer
        rng, buffers = torch.get_rng_state(), [b.clone() for b in generator.buffers()]
        callback.export(cli.trainer, cli.model)  # drawing again leaves the run's state alone
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(torch.equal(a, b) for a, b in zip(generator.buffers(), buffers, strict=True))


def test_export_pool_every_n_epochs_and_at_fit_end(monkeypatch) -> None:
    callback = ExportPool(every_n_epochs=2)
    exported: list[int] = []
    monkeypatch.setattr(callback, "export", lambda trainer, module: exported.append(trainer.epoch))
    for epoch in range(5):
        trainer = SimpleNamespace(current_epoch=epoch, should_stop=False, max_epochs=5, epoch=epoch)
        callback.on_train_epoch_end(trainer, None)
    callback.on_fit_end(SimpleNamespace(epoch="end"), None)
    assert exported == [1, 3, "end"]  # epochs 2 and 4; the last one's export is fit end's
    with pytest.raises(ConfigError, match="format must be one of"):
        ExportPool(format="zip")


# ---------------------------------------------------------------------- students
def test_export_student_state_dict_and_torchscript(
    distilled: SimpleNamespace, tmp_path: Path
) -> None:
    student = distilled.model.student.eval()
    x = torch.randn(5, 1, 32, 32)
    expected = student(x)
    paths = export_student(distilled.ckpt, tmp_path / "from_ckpt")
    assert {p.name for p in paths.values()} == {
        "student.pt",
        "student.torchscript.pt",
        "student.json",
    }
    state = torch.load(paths["state_dict"], weights_only=True)
    assert set(state) == set(student.state_dict())  # the zoo's names, no prefix
    net = load_classifier_weights(build_classifier("lenet5_half", 10, 1), paths["state_dict"])
    assert torch.equal(net.eval()(x), expected)
    raw = build_classifier("lenet5_half", 10, 1)
    raw.load_state_dict(state, strict=True)  # as the peers' nets of the same names load it
    assert torch.equal(raw.eval()(x), expected)
    scripted = torch.jit.load(str(paths["torchscript"]))
    torch.testing.assert_close(scripted(x), expected, rtol=1e-5, atol=1e-6)
    description = json.loads(paths["description"].read_text())
    assert description["arch"] == "lenet5_half" and description["num_classes"] == 10
    assert description["input_shape"] == [1, 32, 32]
    assert description["mean"] == pytest.approx(list(distilled.data.mean))
    assert description["std"] == pytest.approx(list(distilled.data.std))

    from_module = export_student(distilled.model, tmp_path / "from_module")
    again = torch.load(from_module["state_dict"], weights_only=True)
    assert all(torch.equal(again[k], state[k]) for k in state)
    dfkd_main(["export-student", str(distilled.ckpt), str(tmp_path / "cli")])
    assert (tmp_path / "cli/student.torchscript.pt").is_file()
