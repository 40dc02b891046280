"""DDA's parts: image-to-image diffusion variations of synthetic samples and their filter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from conftest import tiny_fake_args, tiny_fake_run
from tiny_diffusion import save_tiny_pixel_pipeline

from dfkd_lightning.callbacks import DiffusionVariations, SimilarityFilter
from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.batch import SOURCE, SOURCE_INDEX, SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import DiffusionSynthesizer, SampleSpec
from dfkd_lightning.synthesis.terms.context import NetOutput, StepContext
from dfkd_lightning.synthesis.terms.rotation import RotationHeadTerm, rotated_views


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pixel_pipeline(tmp_path_factory.mktemp("pixel") / "pipeline")


def _varier(path: Path) -> DiffusionSynthesizer:
    synthesizer = DiffusionSynthesizer(str(path), num_inference_steps=10, guidance_step=0.0)
    synthesizer.bind(SampleSpec(shape=(1, 8, 8), num_classes=10, batch_size=4))
    return synthesizer


def test_variations_keep_shape_range_targets_and_source_links(pixel_model: Path) -> None:
    synthesizer = _varier(pixel_model)
    torch.manual_seed(0)
    images, targets = torch.rand(3, 1, 8, 8), torch.tensor([4, 7, 1])
    distance = {}
    for strength in (0.1, 1.0):
        torch.manual_seed(1)
        varied = synthesizer.vary(images, targets, copies=2, strength=strength)
        assert varied.samples.shape == (6, 1, 8, 8)
        assert varied.samples.min() >= 0 and varied.samples.max() <= 1
        assert varied.targets.tolist() == [4, 4, 7, 7, 1, 1]
        assert varied.extras[SOURCE_INDEX].tolist() == [0, 0, 1, 1, 2, 2]
        torch.testing.assert_close(varied.extras[SOURCE], images.repeat_interleave(2, 0))
        distance[strength] = (varied.samples - varied.extras[SOURCE]).abs().mean().item()
    # SDEdit starts from the source: a light touch stays close, full strength does not
    assert distance[0.1] < 0.25 * distance[1.0], distance


def test_the_variations_callback_expands_what_reaches_the_pool(
    pixel_model: Path, fake_teacher: Path
) -> None:
    varier = _varier_spec(pixel_model, copies=2)
    cli = tiny_fake_run(
        "deepinversion",
        fake_teacher,
        "--model.init_args.synthesis_size",
        "8",
        "--trainer.callbacks",
        json.dumps([varier]),
    )
    [callback] = [c for c in cli.trainer.callbacks if isinstance(c, DiffusionVariations)]
    assert callback.synthesizer.spec.shape == (1, 8, 8)
    assert len(cli.model.pool) == 2 * 8 * 3  # 2 rounds of 8 images, each + 2 variations


def test_the_similarity_filter_keeps_what_stays_close_to_its_source() -> None:
    torch.manual_seed(0)
    sources = torch.rand(2, 1, 8, 8)
    batch = SyntheticBatch(
        torch.cat([sources, 1 - sources]),
        torch.tensor([0, 1, 0, 1]),
        {SOURCE: torch.cat([sources, sources])},
    )
    module = _IdentityTeacherModule()
    kept = SimilarityFilter(threshold=0.999).keep(module, batch)
    assert kept.tolist() == [True, True, False, False]


class _IdentityTeacherModule:
    """A module whose teacher's features are the flattened images themselves."""

    class _Teacher(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False):
            return x.flatten(1)[:, :10], x.flatten(1)

    class _Student(torch.nn.Module):  # features: the pixels plus one
        def forward(self, x: torch.Tensor, return_features: bool = False):
            return x.flatten(1)[:, :10], x.flatten(1) + 1

    teacher, student = _Teacher(), _Student()

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def to_input_size(x: torch.Tensor) -> torch.Tensor:
        return x


# ----------------------------------------------------------------------------- the filter
def _unit(angle_degrees: float) -> list[float]:
    angle = math.radians(angle_degrees)
    return [math.cos(angle), math.sin(angle)]


def _cosines(sources: list[list[float]], samples: list[list[float]]) -> list[float]:
    return [
        sum(a * b for a, b in zip(s, v, strict=True))
        / math.sqrt(sum(a * a for a in s) * sum(b * b for b in v))
        for s, v in zip(sources, samples, strict=True)
    ]


def test_the_filter_keeps_exactly_the_variations_at_or_above_omega() -> None:
    # 2-pixel images whose teacher features are the pixels: each variation's cosine to its
    # source is the cosine of the angle between them
    sources = torch.tensor([_unit(10.0), _unit(10.0), _unit(80.0), _unit(80.0), _unit(45.0)])
    samples = torch.tensor([_unit(10.0), _unit(70.0), _unit(80.0), _unit(170.0), _unit(0.0)])
    batch = SyntheticBatch(
        samples.view(5, 1, 1, 2),
        torch.tensor([3, 3, 5, 5, 1]),
        {SOURCE: sources.view(5, 1, 1, 2), SOURCE_INDEX: torch.tensor([0, 0, 1, 1, 2])},
    )
    hand = _cosines(sources.tolist(), samples.tolist())  # 1 (a source), cos 60, 1, cos 90, cos 45
    module = _IdentityTeacherModule()
    for omega in (0.5, hand[4], 0.71, 0.99):
        kept = SimilarityFilter(threshold=omega).keep(module, batch)
        assert kept.tolist() == [cosine >= omega for cosine in hand], omega
    # through the callback: the sources pass uncounted, the keep rate is the variations'
    callback = SimilarityFilter(threshold=0.6)
    passed = callback.on_samples_synthesized(None, module, batch)
    assert passed.extras[SOURCE_INDEX].tolist() == [0, 1, 2]
    assert (callback.seen, callback.kept) == (3, 1)
    # another embedding: the student's features, here the pixels plus one
    hand = _cosines((sources + 1).tolist(), (samples + 1).tolist())
    kept = SimilarityFilter(0.6, embedding="student").keep(module, batch)
    assert kept.tolist() == [cosine >= 0.6 for cosine in hand] != [True, False, True, False, True]
    with pytest.raises(ConfigError, match="embedding"):
        SimilarityFilter(0.6, embedding="clip")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- rotation head
def test_rotated_views_and_their_joint_labels() -> None:
    images = torch.arange(8.0).view(2, 1, 2, 2)
    views, labels = rotated_views(images, torch.tensor([2, 0]))
    assert views.shape == (8, 1, 2, 2)
    torch.testing.assert_close(views[1], torch.rot90(images[0], 1, (1, 2)))
    torch.testing.assert_close(views[6], torch.rot90(images[1], 2, (1, 2)))
    assert labels.tolist() == [8, 9, 10, 11, 0, 1, 2, 3]
    with pytest.raises(ConfigError, match="square"):
        rotated_views(torch.zeros(1, 1, 2, 3), torch.tensor([0]))


def test_the_rotation_head_by_hand_detached_or_not() -> None:
    from dfkd_lightning.nets import build_classifier

    torch.manual_seed(0)
    student = build_classifier("lenet5_half", 10, 1)
    module = SimpleNamespace(student=student, input_shape=(1, 32, 32), num_classes=10)
    term = RotationHeadTerm()
    term.bind(module)
    assert term.head.layers[-1].out_features == 40
    inputs, targets = torch.randn(3, 1, 32, 32), torch.tensor([1, 4, 9])
    ctx = StepContext(
        SyntheticBatch(inputs, targets), inputs, NetOutput(torch.zeros(3, 10)), None, "x", module
    )
    student.train()
    loss = term(ctx)
    student.eval()
    views, labels = rotated_views(inputs, targets)
    _, features = student(views, return_features=True)
    logits = torch.nn.functional.normalize(term.head(features.detach()), dim=1)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))
    student.train()
    loss = term(ctx)
    loss.backward()
    assert student.training  # eval only for the detached forward
    assert all(p.grad is None for p in student.parameters())  # the release: detached
    assert term.head.layers[0].weight.grad is not None
    attached = RotationHeadTerm(detach_student=False)
    attached.bind(module)
    attached(ctx).backward()
    assert any(p.grad is not None for p in student.parameters())
    before = term.head.layers[0].weight.clone()
    term.end_round(None)
    assert not torch.equal(before, term.head.layers[0].weight)  # re-initialised


def test_the_release_synthesis_attacks_the_rotation_head(fake_teacher: Path) -> None:
    cli = tiny_fake_run("dda_release", fake_teacher)
    metrics = cli.trainer.callback_metrics
    assert metrics["synth/rotation_adv"] < 0  # -CE
    assert {"train/kd", "train/ce", "train/cd", "train/rotation"} <= metrics.keys()
    with pytest.raises(ValueError, match="rotation_adv attacks the student's rotation head"):
        tiny_fake_run("dda_release", fake_teacher, "--model.init_args.student_loss.rotation", "0")


# ----------------------------------------------------------------------------- the method
def _varier_spec(pixel_model: Path, copies: int) -> dict:
    """A DiffusionVariations callback with the tiny pixel model: 4 steps, strength 0.5."""
    return {
        "class_path": "dfkd_lightning.callbacks.DiffusionVariations",
        "init_args": {
            "synthesizer": {
                "class_path": "dfkd_lightning.synthesis.synthesizers.DiffusionSynthesizer",
                "init_args": {
                    "pretrained": str(pixel_model),
                    "num_inference_steps": 4,
                    "guidance_step": 0.0,
                },
            },
            "copies": copies,
            "strength": 0.5,
        },
    }


def _dda_callbacks(pixel_model: Path, omega: float) -> str:
    similarity = {"class_path": "dfkd_lightning.callbacks.SimilarityFilter"}
    return json.dumps(
        [_varier_spec(pixel_model, copies=1), {**similarity, "init_args": {"threshold": omega}}]
    )


def test_dda_runs_with_variations_and_filter(pixel_model: Path, fake_teacher: Path) -> None:
    kept = {}
    for omega in (-1.0, 1.0):
        cli = tiny_fake_run(
            "dda", fake_teacher, "--trainer.callbacks", _dda_callbacks(pixel_model, omega)
        )
        kept[omega] = len(cli.model.pool)
        metrics = cli.trainer.callback_metrics
        assert {"train/kd", "train/ce", "train/cd", "train/rotation", "synth/cr"} <= metrics.keys()
    assert kept[-1.0] == 2 * 8 * 2  # 2 rounds of 8 images and one variation each
    assert 2 * 8 <= kept[1.0] < kept[-1.0]  # the sources always, few variations


def test_the_expanded_pool_resumes_exactly(
    pixel_model: Path, fake_teacher: Path, tmp_path: Path
) -> None:
    def run(max_epochs: int, ckpt: Path | None = None, save: Path | None = None) -> DFKDCLI:
        L.seed_everything(0)
        extra = ["--ckpt_path", str(ckpt)] if ckpt else []
        cli = DFKDCLI(
            args=[
                *tiny_fake_args("dda", fake_teacher),
                "--trainer.max_epochs",
                str(max_epochs),
                "--trainer.callbacks",
                _dda_callbacks(pixel_model, 0.5),
                *extra,
            ]
        )
        if save:
            cli.trainer.save_checkpoint(save, weights_only=False)
        return cli

    straight = run(2)
    ckpt = tmp_path / "epoch1.ckpt"
    run(1, save=ckpt)
    resumed = run(2, ckpt=ckpt)
    assert len(straight.model.pool) > 4 * 8  # 4 rounds of 8 sources, with variations
    for name in ("images", "targets"):
        torch.testing.assert_close(
            getattr(resumed.model.pool, name)(), getattr(straight.model.pool, name)()
        )
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
