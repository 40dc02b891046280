"""DDA's parts: image-to-image diffusion variations of synthetic samples and their filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_fake_run
from tiny_diffusion import save_tiny_pixel_pipeline

from dfkd_lightning.callbacks import DiffusionVariations, SimilarityFilter
from dfkd_lightning.synthesis.batch import SOURCE, SOURCE_INDEX, SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import DiffusionSynthesizer, SampleSpec


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
    varier = {
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
            "copies": 2,
            "strength": 0.5,
        },
    }
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

    teacher = _Teacher()

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return x

    @staticmethod
    def to_input_size(x: torch.Tensor) -> torch.Tensor:
        return x
