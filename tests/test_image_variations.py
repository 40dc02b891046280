"""Stable Diffusion image variations in the diffusion synthesizer: a tiny
``StableDiffusionImageVariationPipeline`` built in code, saved with ``save_pretrained`` and
loaded back through the real loading path; offline, CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import QUIET
from tiny_diffusion import save_tiny_image_variations
from torch import nn

from dfkd_lightning.callbacks import DiffusionVariations, SimilarityFilter
from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.synthesis.batch import SOURCE, SOURCE_INDEX
from dfkd_lightning.synthesis.diffusion.denoisers import ImageVariationDenoiser, to_images
from dfkd_lightning.synthesis.synthesizers import DiffusionSynthesizer, SampleSpec


@pytest.fixture(scope="module")
def variations_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_image_variations(tmp_path_factory.mktemp("variations") / "pipeline")


def _varier(path: Path, shape=(3, 16, 16), **options) -> DiffusionSynthesizer:
    options = {"num_inference_steps": 4, "guidance_step": 0.0, **options}
    synthesizer = DiffusionSynthesizer(str(path), **options)
    synthesizer.bind(SampleSpec(shape=shape, num_classes=10, batch_size=4))
    return synthesizer


def _denoiser(synthesizer: DiffusionSynthesizer) -> ImageVariationDenoiser:
    denoiser = synthesizer.denoiser
    assert isinstance(denoiser, ImageVariationDenoiser)
    return denoiser


def test_it_loads_with_the_feature_extractors_input_size_and_statistics(
    variations_model: Path,
) -> None:
    from transformers import CLIPImageProcessor

    denoiser = _denoiser(_varier(variations_model))
    assert denoiser.image_size == (32, 32)
    processor = CLIPImageProcessor.from_pretrained(variations_model, subfolder="feature_extractor")
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    expected = processor(images=pixels, return_tensors="pt").pixel_values
    ours = denoiser.clip_pixels(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 8, 8)])
def test_variations_keep_shape_range_targets_and_source_links(
    variations_model: Path, shape: tuple[int, int, int]
) -> None:
    synthesizer = _varier(variations_model, shape=shape)
    torch.manual_seed(0)
    images, targets = torch.rand(3, shape[0], 20, 20), torch.tensor([4, 7, 1])
    varied = synthesizer.vary(images, targets, copies=2, strength=1.0)
    assert varied.samples.shape == (6, *shape)
    assert varied.samples.min() >= 0 and varied.samples.max() <= 1
    assert varied.targets.tolist() == [4, 4, 7, 7, 1, 1]
    assert varied.extras[SOURCE_INDEX].tolist() == [0, 0, 1, 1, 2, 2]
    expected = to_images(images, shape).repeat_interleave(2, 0)
    torch.testing.assert_close(varied.extras[SOURCE], expected)


def test_the_conditioning_is_the_sources_clip_embedding(variations_model: Path) -> None:
    guided = _denoiser(_varier(variations_model, guidance_scale=3.0))
    plain = _denoiser(_varier(variations_model, guidance_scale=1.0))
    torch.manual_seed(0)
    sources, targets = torch.rand(2, 3, 24, 24), torch.tensor([0, 1])
    conditioning = guided.prepare(targets, sources)
    assert conditioning.shape == (4, 1, 32)  # (zeros, embeddings), projection_dim 32
    assert not conditioning[:2].any()
    embeddings = plain.prepare(targets, sources)
    assert embeddings.shape == (2, 1, 32)
    torch.testing.assert_close(conditioning[2:], embeddings)
    assert not torch.allclose(embeddings[0], embeddings[1])  # two sources, two embeddings
    gray = sources[:, :1]
    torch.testing.assert_close(
        plain.prepare(targets, gray), plain.prepare(targets, gray.expand(-1, 3, -1, -1))
    )


def test_the_source_steers_what_is_drawn_from_the_same_noise(variations_model: Path) -> None:
    synthesizer = _varier(variations_model)
    torch.manual_seed(0)
    sources = torch.rand(2, 3, 16, 16)
    drawn = []
    for source in sources:
        torch.manual_seed(1)
        drawn.append(synthesizer.vary(source[None], torch.tensor([3]), strength=1.0).samples)
    assert not torch.allclose(drawn[0], drawn[1])


def test_generating_without_sources_points_to_the_variations_callback(
    variations_model: Path,
) -> None:
    synthesizer = _varier(variations_model)
    with pytest.raises(ConfigError, match="DiffusionVariations"):
        synthesizer.render(2)


class _LinearTeacher(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(3 * 16 * 16, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))


@pytest.mark.parametrize("guidance_step", [0.0, 1.0])
def test_partial_strength_starts_from_the_sources_latents(
    variations_model: Path, guidance_step: float
) -> None:
    synthesizer = _varier(variations_model, guidance_step=guidance_step, micro_batch_size=2)
    teacher = _LinearTeacher()
    synthesizer.attach(lambda batch: F.cross_entropy(teacher(batch.samples), batch.targets))
    torch.manual_seed(0)
    images, targets = torch.rand(3, 3, 16, 16), torch.tensor([2, 5, 9])
    varied = synthesizer.vary(images, targets, copies=1, strength=0.5)
    assert varied.samples.shape == (3, 3, 16, 16)
    assert torch.isfinite(varied.samples).all()
    assert varied.samples.min() >= 0 and varied.samples.max() <= 1
    assert varied.targets.tolist() == [2, 5, 9]


def test_the_cifar10_dda_config_runs_with_an_image_variations_model(
    variations_model: Path, tmp_path: Path
) -> None:
    config = Path(__file__).parents[1] / "configs/experiments/cifar10/dda_wrn_40_2_wrn_16_1.yaml"
    callbacks = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    [varier] = [c for c in callbacks if c["class_path"].endswith("DiffusionVariations")]
    assert varier["init_args"]["synthesizer"]["init_args"]["guidance_scale"] == 3.0
    varier["init_args"]["synthesizer"]["init_args"].update(
        pretrained=str(variations_model), num_inference_steps=2, dtype="float32"
    )
    callbacks = [c for c in callbacks if c["class_path"].startswith("dfkd_lightning")]
    teacher = tmp_path / "wrn_16_2.pt"
    torch.save(build_classifier("wrn_16_2", 10, 3).state_dict(), teacher)
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(config),
            *QUIET,
            "--data.init_args.dataset",
            "fake",
            "--data.init_args.num_workers",
            "0",
            "--data.init_args.steps_per_epoch",
            "2",
            "--model.init_args.teacher",
            "wrn_16_2",
            "--model.init_args.teacher_checkpoint",
            str(teacher),
            "--model.init_args.synthesis_batch_size",
            "4",
            "--model.init_args.batch_size",
            "4",
            "--model.init_args.kd_steps",
            "2",
            "--model.init_args.g_steps",
            "1",
            "--model.init_args.synthesis_loss.cr",
            "{weight: 0.8, bank_size: 16, n_neg: 4}",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.callbacks",
            json.dumps(callbacks),
            "--test_after_fit",
            "false",
        ]
    )
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert kinds.index(DiffusionVariations) < kinds.index(SimilarityFilter)
    # one round of 4 images and what the filter kept of their 4 variations
    assert 4 <= len(cli.model.pool) <= 8
    assert cli.model.student_steps == 2
