"""Monitoring and filtering the synthetic samples: FID/KID, balance and diversity, filters,
grids."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import (
    DIGITS_EXPERIMENTS,
    TINY,
    fit_with_cpu_ddp,
    quick_trainer,
    small_method_options,
)
from lightning.pytorch.loggers import CSVLogger
from torchmetrics.image.fid import FrechetInceptionDistance

from dfkd_lightning.callbacks import (
    ClassBalance,
    ClassQuotaFilter,
    ConfidenceFilter,
    ImageGrids,
    SampleQuality,
    SimilarityFilter,
)
from dfkd_lightning.callbacks.balance import (
    balance_entropy,
    inter_class_separation,
    intra_class_diversity,
)
from dfkd_lightning.callbacks.features import TeacherFeatures, build_feature_extractor
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.export import load_exported, read_index
from dfkd_lightning.methods import DFQ, DeepInversion
from dfkd_lightning.methods.frozen_teacher import load_frozen_teacher
from dfkd_lightning.results import read_run
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import LearnablePixels


def _digits() -> ClassificationDataModule:
    return ClassificationDataModule(
        "digits", channels=1, train_source="steps", steps_per_epoch=6, batch_size=16
    )


def _monitors(tmp_path: Path) -> list:
    return [
        SampleQuality(num_samples=64, kid_subset_size=16),
        ClassBalance(num_samples=64),
        ImageGrids(per_class=4, directory=str(tmp_path / "grids")),
    ]


@pytest.mark.parametrize("method", ["dfq", "deepinversion"])
def test_a_generator_and_a_pool_method_log_quality_balance_and_grids(
    method: str, digits_bn_teacher_ckpt: Path, tmp_path: Path
) -> None:
    data = _digits()
    if method == "dfq":
        model = DFQ(**small_method_options(digits_bn_teacher_ckpt, data, kd_steps=3, g_steps=1))
    else:
        model = DeepInversion(
            **small_method_options(digits_bn_teacher_ckpt, data, synthesizer=LearnablePixels())
        )
    callbacks = _monitors(tmp_path)
    trainer = quick_trainer(
        tmp_path, 2, callbacks=callbacks, limit_val_batches=2, logger=CSVLogger(tmp_path)
    )
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    for name in (
        "synth/fid",
        "synth/kid_mean",
        "synth/kid_std",
        "synth/class_entropy",
        "synth/confidence",
        "synth/intra_class_diversity",
        "synth/class_fraction/0",
    ):
        assert name in metrics and torch.isfinite(metrics[name]), name
    assert float(metrics["synth/fid"]) > 0
    assert 0 <= float(metrics["synth/class_entropy"]) <= 1
    grids = sorted((tmp_path / "grids").glob("epoch_*.png"))
    assert [p.name for p in grids] == ["epoch_0001.png", "epoch_0002.png"]
    if method == "deepinversion":  # it aims at classes: predictions vs targets
        assert "synth/target_match" in metrics


def test_a_filter_changes_what_reaches_the_pool(digits_bn_teacher_ckpt: Path, tmp_path) -> None:
    data = _digits()
    options = small_method_options(digits_bn_teacher_ckpt, data, synthesizer=LearnablePixels())
    quota = ClassQuotaFilter(per_class=1, label="target")
    model = DeepInversion(**options)
    quick_trainer(tmp_path, 1, callbacks=[quota], limit_val_batches=0).fit(model, datamodule=data)
    targets = model.pool.targets()
    assert len(targets) == len(targets.unique())  # one image per class at most
    assert len(targets) < 3 * 8  # 3 rounds of 8 images without the filter
    assert int(quota.counts.sum()) == len(targets)
    assert quota.state_dict()["counts"].sum() == len(targets)


def _teacher_features(teacher_ckpt: Path) -> TeacherFeatures:
    teacher = load_frozen_teacher("lenet5_bn", str(teacher_ckpt), 10, 1)
    data = _digits()
    return build_feature_extractor(
        "teacher", (1, 32, 32), teacher=teacher, normalize=lambda x: data.normalize(x)
    )


def _digits_images(split: str, n: int) -> torch.Tensor:
    data = ClassificationDataModule("digits", channels=1, batch_size=n, val_fraction=0.2)
    data.setup("fit")
    loader = data.train_dataloader() if split == "train" else data.val_dataloader()
    images, _ = next(iter(loader))
    return data.denormalize(images).clamp(0, 1)


def _fid(extractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def test_teacher_fid_knows_real_images_from_noise(digits_bn_teacher_ckpt: Path) -> None:
    extractor = _teacher_features(digits_bn_teacher_ckpt)
    torch.manual_seed(0)
    val, train = _digits_images("val", 256), _digits_images("train", 256)
    noise = (0.5 + 0.25 * torch.randn_like(train)).clamp(0, 1)
    assert _fid(extractor, val, val) == pytest.approx(0.0, abs=1e-3)
    real, gaussian = _fid(extractor, val, train), _fid(extractor, val, noise)
    assert real < gaussian / 5, (real, gaussian)


def test_balance_and_diversity_by_hand() -> None:
    assert float(balance_entropy(torch.tensor([0, 1, 2, 3]), 4)) == pytest.approx(1.0)
    assert float(balance_entropy(torch.tensor([2, 2, 2]), 4)) == pytest.approx(0.0)
    half = -2 * 0.5 * math.log(0.5) / math.log(4)
    assert float(balance_entropy(torch.tensor([0, 1, 0, 1]), 4)) == pytest.approx(half)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    classes = torch.tensor([0, 0, 1, 1])
    # class 0: unit vectors (1,0),(0,1) at distance sqrt 2; class 1: the same after normalising
    assert float(intra_class_diversity(features, classes)) == pytest.approx(math.sqrt(2))
    # both centroids are (0.5, 0.5): every sample is 1/sqrt 2 from the other class's
    assert float(inter_class_separation(features, classes)) == pytest.approx(1 / math.sqrt(2))
    assert math.isnan(float(inter_class_separation(features, torch.zeros(4, dtype=torch.long))))


class _Teacher(torch.nn.Module):
    """Logits = the first three pixels; features = the whole image."""

    def forward(self, x: torch.Tensor, return_features: bool = False):
        flat = x.flatten(1)
        return (flat[:, :3], flat) if return_features else flat[:, :3]


def _module() -> SimpleNamespace:
    return SimpleNamespace(
        teacher=_Teacher(), num_classes=3, normalize=lambda x: x, to_input_size=lambda x: x
    )


def test_confidence_filter_keeps_confident_samples() -> None:
    samples = torch.zeros(3, 1, 2, 2)
    samples[0, 0, 0, 0] = 10.0  # confident in class 0
    kept = ConfidenceFilter(0.9).on_samples_synthesized(None, _module(), SyntheticBatch(samples))
    assert len(kept) == 1 and torch.equal(kept.samples, samples[:1])


def test_class_quota_caps_each_class_across_batches() -> None:
    quota = ClassQuotaFilter(per_class=2, label="target")
    batch = SyntheticBatch(torch.rand(5, 1, 2, 2), torch.tensor([0, 0, 0, 1, 2]))
    first = quota.on_samples_synthesized(None, _module(), batch)
    assert first.targets.tolist() == [0, 0, 1, 2]
    second = quota.on_samples_synthesized(None, _module(), batch)
    assert second.targets.tolist() == [1, 2]
    assert quota.counts.tolist() == [2, 2, 2]
    with pytest.raises(ConfigError, match="label: teacher"):
        quota.on_samples_synthesized(None, _module(), SyntheticBatch(torch.rand(2, 1, 2, 2)))


def test_similarity_filter_compares_with_the_source() -> None:
    source = torch.rand(4, 1, 2, 2) + 0.1
    samples = source.clone()
    samples[2:] = -source[2:]  # opposite embeddings
    batch = SyntheticBatch(samples, extras={"source": source})
    kept = SimilarityFilter(threshold=0.5).on_samples_synthesized(None, _module(), batch)
    assert len(kept) == 2
    with pytest.raises(ConfigError, match="source"):
        SimilarityFilter().on_samples_synthesized(None, _module(), SyntheticBatch(samples))


def test_inception_features_need_their_weights_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "inception.pth"
    with pytest.raises(MissingFileError, match="download https://github.com/toshas"):
        build_feature_extractor("inception", (1, 32, 32), weights=str(weights))
    # a local weights file is what is read (here random weights: nothing is downloaded)
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with monkeypatch.context() as patch:
        patch.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a: None)
        random = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(random.state_dict(), weights)
    extractor = build_feature_extractor("inception", (1, 32, 32), weights=str(weights))
    assert extractor.num_features == 2048
    torch.save({"weights": SimpleNamespace()}, weights)  # an object, not tensors: refused
    with pytest.raises(ConfigError, match="tensors"):
        build_feature_extractor("inception", (1, 32, 32), weights=str(weights))


def test_torchvision_features_from_a_local_state_dict(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    extractor = build_feature_extractor(
        "torchvision", (1, 32, 32), weights=str(path), torchvision_model="resnet18"
    )
    assert extractor.num_features == 512
    with pytest.raises(ConfigError, match="torchvision_model"):
        build_feature_extractor("torchvision", (1, 32, 32))


def test_monitors_grids_and_export_run_under_two_process_ddp(
    digits_bn_teacher_ckpt: Path, tmp_path: Path
) -> None:
    """Added on the command line, every rank adds its samples to FID/KID and balance, rank 0
    writes the grids, each rank exports its own pool."""
    callbacks = [
        *("--trainer.callbacks+=dfkd_lightning.callbacks.SampleQuality",),
        *("--trainer.callbacks.num_samples=32", "--trainer.callbacks.kid_subset_size=8"),
        *("--trainer.callbacks+=dfkd_lightning.callbacks.ClassBalance",),
        *("--trainer.callbacks+=dfkd_lightning.callbacks.ImageGrids",),
        *("--trainer.callbacks+=dfkd_lightning.callbacks.ExportPool",),
        "--trainer.callbacks.format=shards",
    ]
    fit_with_cpu_ddp(
        [
            *("--config", str(DIGITS_EXPERIMENTS / "deepinversion.yaml"), *TINY),
            *("--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false"),
            *("--model.init_args.teacher_checkpoint", str(digits_bn_teacher_ckpt)),
            *("--test_after_fit", "false", *callbacks),
        ],
        tmp_path,
        "ddp_find_unused_parameters_true",
    )
    run = read_run(tmp_path / "runs/digits/deepinversion/version_0")
    for name in ("synth/fid", "synth/kid_mean", "synth/class_entropy"):
        assert math.isfinite(run.figures[name]), name
    assert sorted(p.name for p in (run.path / "grids").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]
    index = read_index(run.path / "synthetic")
    assert [rank["directory"] for rank in index["ranks"]] == ["rank_00", "rank_01"]
    images, labels = load_exported(run.path / "synthetic")
    assert len(images) == len(labels) == index["count"] > 0
