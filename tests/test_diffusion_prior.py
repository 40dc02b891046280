"""The offline diffusion prior: DDPM training of a small diffusers UNet, saved and loaded back
through diffusers' own from_pretrained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, QUIET, few_batches
from diffusers import DDPMPipeline

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.methods import DiffusionPriorTraining


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    monkeypatch.chdir(tmp_path)


def test_the_digits_prior_trains_saves_and_loads_as_a_diffusers_pipeline(tmp_path: Path) -> None:
    cli = DFKDCLI(
        args=[
            "fit",
            "--config",
            str(CONFIGS / "experiments" / "digits" / "diffusion_prior.yaml"),
            *QUIET,
            *few_batches(train=3),
            "--model.init_args.block_out_channels",
            "[8, 16]",
        ]
    )
    assert cli.datamodule.train_part == "public"
    assert torch.isfinite(cli.trainer.callback_metrics["test/loss"])
    saved = Path("runs/digits/diffusion_prior/pipeline")
    pipeline = DDPMPipeline.from_pretrained(saved)
    for name, value in cli.model.unet.state_dict().items():
        torch.testing.assert_close(pipeline.unet.state_dict()[name], value, msg=name)
    images = pipeline(batch_size=2, num_inference_steps=4, output_type="np").images
    assert images.shape == (2, 8, 8, 1)


def test_clean_images_are_the_inputs_at_sample_size_in_minus_one_to_one() -> None:
    prior = DiffusionPriorTraining(
        sample_size=8, block_out_channels=(8, 16), mean=(0.3,), std=(0.2,)
    )
    white = torch.full((2, 1, 32, 32), (1.0 - 0.3) / 0.2)
    clean = prior.clean_images(white)
    assert clean.shape == (2, 1, 8, 8)
    torch.testing.assert_close(clean, torch.ones_like(clean))


def test_a_prior_of_some_classes_skips_the_others() -> None:
    prior = DiffusionPriorTraining(sample_size=8, block_out_channels=(8, 16), classes=[0, 1])
    images = torch.zeros(4, 1, 32, 32)
    assert prior.training_step((images, torch.tensor([5, 6, 7, 8])), 0) is None
    with pytest.raises(ConfigError, match="classes"):
        DiffusionPriorTraining(classes=[10])
    with pytest.raises(ConfigError, match="divisible"):
        DiffusionPriorTraining(sample_size=9)
