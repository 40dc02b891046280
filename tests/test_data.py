"""Tests of the image-classification data modules (all offline, small fake files)."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import write_fake_mnist
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import calculate_md5

from dfkd_lightning.data import (
    DATASETS,
    ClassificationDataModule,
    DatasetNotFoundError,
    DatasetSpec,
    available_datasets,
    denormalize,
    normalize,
    sources,
)
from dfkd_lightning.data.tiny_imagenet import URL as TINY_URL
from dfkd_lightning.errors import ConfigError

DIGITS_TOTAL = 1797


def _batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


# --------------------------------------------------------------------------- specs / errors
def test_registry_and_unknown_name() -> None:
    assert set(available_datasets()) == {
        "digits",
        "mnist",
        "cifar10",
        "cifar100",
        "tiny_imagenet",
        "fake",
    }
    assert all(isinstance(spec, DatasetSpec) for spec in DATASETS.values())
    with pytest.raises(ValueError, match="imagenet1k") as info:
        ClassificationDataModule("imagenet1k")
    assert "cifar10" in str(info.value) and "digits" in str(info.value)


def test_attributes_without_file_access(tmp_path: Path) -> None:
    expected = {
        "digits": (10, (1, 32, 32)),
        "mnist": (10, (1, 32, 32)),
        "cifar10": (10, (3, 32, 32)),
        "cifar100": (100, (3, 32, 32)),
        "tiny_imagenet": (200, (3, 64, 64)),
        "fake": (10, (3, 32, 32)),
    }
    for name, (classes, shape) in expected.items():
        dm = ClassificationDataModule(name, root=str(tmp_path / "nothing"))
        assert (dm.num_classes, dm.input_shape) == (classes, shape)
        assert len(dm.mean) == len(dm.std) == shape[0]
    assert not (tmp_path / "nothing").exists()
    cifar = ClassificationDataModule("cifar100")
    assert cifar.mean == (0.5071, 0.4867, 0.4408) and cifar.std == (0.2675, 0.2565, 0.2761)


def test_normalize_roundtrip() -> None:
    x = torch.rand(4, 3, 8, 8)
    mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
    y = normalize(x, mean, std)
    assert torch.allclose(y[:, 1], (x[:, 1] - mean[1]) / std[1])
    assert torch.allclose(denormalize(y, mean, std), x, atol=1e-6)
    assert torch.allclose(denormalize(normalize(x[0], mean, std), mean, std), x[0], atol=1e-6)


# --------------------------------------------------------------------------- digits
def test_digits_batches_and_ranges() -> None:
    dm = ClassificationDataModule("digits", batch_size=64)
    dm.prepare_data()
    dm.setup("fit")
    x, y = _batch(dm.train_dataloader())
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < 10
    lo, hi = (0 - dm.mean[0]) / dm.std[0], (1 - dm.mean[0]) / dm.std[0]
    assert float(x.min()) >= lo - 1e-4 and float(x.max()) <= hi + 1e-4
    xv, _ = _batch(dm.val_dataloader())
    assert float(xv.min()) == pytest.approx(lo, abs=1e-4)
    assert float(xv.max()) == pytest.approx(hi, abs=1e-4)
    assert torch.equal(xv, _batch(dm.val_dataloader())[0])  # eval is deterministic
    assert len(dm.train_dataloader()) == len(dm.train_set) // 64  # drop_last


def test_digits_split_sizes_disjoint_and_seeded() -> None:
    def parts(seed: int) -> dict[str, set[int]]:
        dm = ClassificationDataModule("digits", seed=seed)
        dm.setup()
        train_base, test_base = dm._base("train"), dm._base("test")
        split = dm.split_indices()
        out = {k: set(train_base.source_indices[v].tolist()) for k, v in split.items()}
        out["test"] = set(test_base.source_indices.tolist())
        assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == tuple(
            len(out[k]) for k in ("train", "val", "test")
        )
        return out

    a, b, c = parts(0), parts(0), parts(1)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (1294, 144, 359)
    assert sum(len(v) for v in a.values()) == DIGITS_TOTAL
    assert set.union(*a.values()) == set(range(DIGITS_TOTAL))
    assert not (a["train"] & a["val"]) and not (a["train"] | a["val"]) & a["test"]
    assert a == b  # same seed -> same split
    assert a["val"] != c["val"] and a["test"] == c["test"]  # test split is fixed


def test_digits_val_fraction_zero() -> None:
    dm = ClassificationDataModule("digits", val_fraction=0.0)
    dm.setup("fit")
    assert dm.val_set is None and dm.val_dataloader() == []
    assert len(dm.train_set) == DIGITS_TOTAL - 359


def test_digits_channels_and_size() -> None:
    dm = ClassificationDataModule("digits", channels=3, image_size=16, batch_size=32)
    assert dm.input_shape == (3, 16, 16) and dm.mean == (dm.mean[0],) * 3
    x, _ = _batch(dm.test_dataloader())
    assert x.shape == (32, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    dm = ClassificationDataModule("digits", image_size=8, augment=False, batch_size=16)
    assert _batch(dm.train_dataloader())[0].shape == (16, 1, 8, 8)


def test_digits_stored_mean_std_match_data() -> None:
    images = sources._digits(32, 1).images
    assert images.shape == (DIGITS_TOTAL, 1, 32, 32)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    spec = DATASETS["digits"]
    assert float(images.mean()) == pytest.approx(spec.mean[0], abs=1e-3)
    assert float(images.std()) == pytest.approx(spec.std[0], abs=1e-3)


# --------------------------------------------------------------------------- fake
def test_fake_dataset() -> None:
    dm = ClassificationDataModule("fake", fake_size=100, fake_num_classes=4, batch_size=16)
    assert dm.num_classes == 4 and dm.input_shape == (3, 32, 32)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 100
    x, y = _batch(dm.train_dataloader())
    assert x.shape == (16, 3, 32, 32) and int(y.max()) < 4
    again = ClassificationDataModule("fake", fake_size=100, fake_num_classes=4, batch_size=16)
    assert torch.equal(_batch(dm.test_dataloader())[0], _batch(again.test_dataloader())[0])
    gray = ClassificationDataModule("fake", channels=1, image_size=8, batch_size=4)
    assert _batch(gray.val_dataloader())[0].shape == (4, 1, 8, 8)


# --------------------------------------------------------------------------- CIFAR
def _write_cifar(root: Path, name: str, monkeypatch: pytest.MonkeyPatch, n: int = 10) -> None:
    """Small CIFAR pickles in torchvision's layout; the test patches the class' md5 lists."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        cls, folder, classes = CIFAR10, root / "cifar10" / "cifar-10-batches-py", 10
        train_files, test_files = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        meta_file, meta_key = "batches.meta", "label_names"
    else:
        cls, folder, classes = CIFAR100, root / "cifar100" / "cifar-100-python", 100
        train_files, test_files = ["train"], ["test"]
        meta_file, meta_key = "meta", "fine_label_names"
    folder.mkdir(parents=True)
    for fname in train_files + test_files:
        labels = rng.integers(0, classes, n).tolist()
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        if name == "cifar10":
            entry["labels"] = labels
        else:
            entry.update(fine_labels=labels, coarse_labels=[lab // 5 for lab in labels])
        with open(folder / fname, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / meta_file, "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(classes)]}, f)

    def md5s(files: list[str]) -> list[list[str]]:
        return [[fname, calculate_md5(folder / fname)] for fname in files]

    monkeypatch.setattr(cls, "train_list", md5s(train_files))
    monkeypatch.setattr(cls, "test_list", md5s(test_files))
    meta = {"filename": meta_file, "key": meta_key, "md5": calculate_md5(folder / meta_file)}
    monkeypatch.setattr(cls, "meta", meta)


@pytest.mark.parametrize(("name", "n_train"), [("cifar10", 50), ("cifar100", 10)])
def test_cifar_from_fake_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, n_train: int
) -> None:
    _write_cifar(tmp_path, name, monkeypatch, n=n_train // (5 if name == "cifar10" else 1))
    dm = ClassificationDataModule(name, root=str(tmp_path), batch_size=4, val_fraction=0.2)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (n_train * 4 // 5, n_train // 5)
    assert len(dm.test_set) == n_train // (5 if name == "cifar10" else 1)
    x, y = _batch(dm.train_dataloader())
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert int(y.max()) < dm.num_classes
    xt, yt = _batch(dm.test_dataloader())
    raw = dm._base("test")
    expected = torch.tensor(raw.data[:4]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(dm.denormalize(xt), expected, atol=1e-5)
    assert yt.tolist() == raw.targets[:4]


def test_cifar_download_goes_to_dataset_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake_download(self: CIFAR10) -> None:  # stands in for the network
        calls.append(str(self.root))
        _write_cifar(tmp_path, "cifar10", monkeypatch, n=2)

    monkeypatch.setattr(CIFAR10, "download", fake_download)
    dm = ClassificationDataModule("cifar10", root=str(tmp_path), download=True)
    dm.prepare_data()
    assert calls == [str(tmp_path / "cifar10")]


# --------------------------------------------------------------------------- MNIST
def test_mnist_from_fake_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist", train=20, test=6)
    dm = ClassificationDataModule("mnist", root=str(tmp_path), batch_size=4, channels=3)
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 2, 6)
    x, _ = _batch(dm.train_dataloader())
    assert x.shape == (4, 3, 32, 32) and dm.mean == (0.1307,) * 3
    xt, _ = _batch(dm.test_dataloader())
    assert torch.equal(xt[:, 0], xt[:, 2])


# --------------------------------------------------------------------------- Tiny-ImageNet
def _write_tiny(root: Path) -> list[str]:
    base = root / "tiny-imagenet-200"
    wnids = ["n03", "n01", "n02"]  # unsorted on purpose
    rng = np.random.default_rng(0)
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    annotations = []
    for w, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG")
        for i in range(2):
            fname = f"val_{w * 2 + i}.JPEG"
            gray = rng.integers(0, 256, (64, 64), dtype=np.uint8)  # a grayscale JPEG
            Image.fromarray(gray).save(base / "val" / "images" / fname)
            annotations.append(f"{fname}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return annotations


def test_tiny_imagenet_from_fake_tree(tmp_path: Path) -> None:
    annotations = _write_tiny(tmp_path / "tiny_imagenet")
    dm = ClassificationDataModule(
        "tiny_imagenet", root=str(tmp_path), batch_size=3, val_fraction=0.25
    )
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (9, 3, 6)
    x, _ = _batch(dm.train_dataloader())
    assert x.shape == (3, 3, 64, 64)
    test = dm._base("test")
    assert test.classes == ["n01", "n02", "n03"]
    labels = {line.split("\t")[0]: test.class_to_idx[line.split("\t")[1]] for line in annotations}
    assert [label for _, label in test] == [labels[path.name] for path, _ in test.samples]
    assert sorted(test.targets) == [0, 0, 1, 1, 2, 2]
    small = ClassificationDataModule("tiny_imagenet", root=str(tmp_path), image_size=32)
    xs, ys = _batch(small.test_dataloader())
    assert xs.shape == (6, 3, 32, 32) and ys.tolist() == test.targets


def test_tiny_imagenet_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def fake_download(url: str, download_root: str, **kwargs: object) -> None:
        calls.append((url, download_root))
        _write_tiny(Path(download_root))

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    dm = ClassificationDataModule("tiny_imagenet", root=str(tmp_path), download=True)
    dm.prepare_data()
    dm.prepare_data()  # already extracted: no second download
    assert calls == [(TINY_URL, str(tmp_path / "tiny_imagenet"))]
    assert TINY_URL == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


# --------------------------------------------------------------------------- missing files
@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "tiny_imagenet"])
def test_missing_files_error(tmp_path: Path, name: str) -> None:
    dm = ClassificationDataModule(name, root=str(tmp_path))
    for call in (dm.prepare_data, lambda: dm.setup("fit"), lambda: dm.setup("test")):
        with pytest.raises(DatasetNotFoundError) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, FileNotFoundError)
        assert str(tmp_path / name) in message and name in message
        assert "data.download=true" in message and "data.root" in message


# --------------------------------------------------------------------------- step pacing
def test_steps_source_without_files(tmp_path: Path) -> None:
    dm = ClassificationDataModule(
        "cifar10",
        root=str(tmp_path / "empty"),
        train_source="steps",
        steps_per_epoch=7,
        val_fraction=0.0,
    )
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 7 and list(loader) == list(range(7))
    assert dm.train_set is None and dm.val_dataloader() == []
    assert not (tmp_path / "empty").exists()


def test_steps_source_still_prepares_val() -> None:
    dm = ClassificationDataModule("digits", train_source="steps", steps_per_epoch=3)
    dm.setup("fit")
    assert dm.train_set is None and len(dm.val_set) == 144
    assert list(dm.train_dataloader()) == [0, 1, 2]


class _TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3 * 32 * 32, 10)
        self.steps: list[int] = []
        self.val_batches = 0

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, int):
            self.steps.append(batch)
            return self.net(torch.zeros(1, 3 * 32 * 32)).sum()
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.val_batches += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("source", "val_fraction"), [("steps", 0.0), ("real", 0.1)])
def test_trainer_fit(source: str, val_fraction: float) -> None:
    dm = ClassificationDataModule(
        "fake", batch_size=32, train_source=source, steps_per_epoch=4, val_fraction=val_fraction
    )
    model = _TinyModule()
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    if source == "steps":
        assert model.steps == [0, 1, 2, 3] * 2 and model.val_batches == 0
    else:
        assert trainer.global_step == 2 * (184 // 32) and model.val_batches == 2


# --------------------------------------------------------------------------- train parts
def test_private_and_public_parts_split_the_train_split() -> None:
    """A teacher on the private part and a prior on the public part share no image; both are
    stratified, seeded by part_seed, and carve their validation sets from themselves."""
    whole = ClassificationDataModule("digits", val_fraction=0.1)
    parts = {
        part: ClassificationDataModule("digits", val_fraction=0.1, train_part=part)
        for part in ("private", "public")
    }
    split = {part: dm.split_indices() for part, dm in parts.items()}
    private = set(split["private"]["train"]) | set(split["private"]["val"])
    public = set(split["public"]["train"]) | set(split["public"]["val"])
    everything = set(whole.split_indices()["train"]) | set(whole.split_indices()["val"])
    assert not private & public and private | public == everything
    assert len(public) == round(0.5 * len(everything))
    assert len(split["private"]["val"]) == round(0.1 * len(private))
    targets = sources.targets_of(whole._base("train"))
    counts = np.bincount(targets[sorted(public)], minlength=10)
    halves = np.bincount(targets, minlength=10) / 2
    assert np.all(np.abs(counts - halves) <= 1)  # stratified
    again = ClassificationDataModule("digits", train_part="public", part_seed=0)
    other = ClassificationDataModule("digits", train_part="public", part_seed=1)
    assert (
        again.split_indices()
        == ClassificationDataModule("digits", train_part="public").split_indices()
    )
    assert other.split_indices() != again.split_indices()


def test_the_whole_train_split_is_split_as_before() -> None:
    dm = ClassificationDataModule("digits", val_fraction=0.1, seed=3)
    targets = sources.targets_of(dm._base("train"))
    train, val = sources.split_indices(targets, 0.1, 3)
    assert dm.split_indices() == {"train": train.tolist(), "val": val.tolist()}


@pytest.mark.parametrize(
    ("options", "message"),
    [({"train_part": "half"}, "train_part"), ({"public_fraction": 1.0}, "public_fraction")],
)
def test_train_part_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClassificationDataModule("digits", **options)
