"""The diffusion synthesizer and DiffDFKD: tiny diffusers models built in code, saved with
``save_pretrained`` and loaded back through the real loading path; offline, CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS, QUIET, fit_with_cpu_ddp
from tiny_diffusion import save_tiny_pixel_pipeline, save_tiny_stable_diffusion
from torch import nn

from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.errors import MissingFileError
from dfkd_lightning.export.read import load_exported, read_index
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.nets.checkpoint import CheckpointNotFoundError, read_checkpoint
from dfkd_lightning.synthesis.batch import SOFT_TARGETS, SyntheticBatch
from dfkd_lightning.synthesis.diffusion.cutmix import (
    LatentCutMix,
    box_weight,
    cutmix_box,
    mix_latents,
    partners,
)
from dfkd_lightning.synthesis.diffusion.denoisers import LatentTextDenoiser, PixelDenoiser
from dfkd_lightning.synthesis.diffusion.generation import GenerationPlan, generate_set
from dfkd_lightning.synthesis.synthesizers import DiffusionSynthesizer, SampleSpec

DIGITS = CONFIGS / "experiments/digits"


@pytest.fixture(scope="module")
def pixel_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_pixel_pipeline(tmp_path_factory.mktemp("pixel") / "pipeline")


@pytest.fixture(scope="module")
def stable_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "pipeline")


def _synthesizer(path: Path, shape=(1, 8, 8), **options) -> DiffusionSynthesizer:
    options = {"num_inference_steps": 6, **options}
    synthesizer = DiffusionSynthesizer(str(path), **options)
    synthesizer.bind(SampleSpec(shape=shape, num_classes=4, batch_size=8))
    return synthesizer


class _LinearTeacher(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(features, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1) * 8)


def _ce_loss(teacher: nn.Module):
    return lambda batch: F.cross_entropy(teacher(batch.samples), batch.targets)


def _generate(synthesizer: DiffusionSynthesizer, targets: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    return synthesizer.generate(targets)


# ----------------------------------------------------------------------------- loading
def test_a_tiny_stable_diffusion_loads_from_its_directory(stable_diffusion: Path) -> None:
    synthesizer = _synthesizer(
        stable_diffusion,
        shape=(3, 8, 8),
        prompt="A realistic photo of {class}",
        class_names=["zero", "one", "two", "three"],
        guidance_scale=3.0,
    )
    assert isinstance(synthesizer.denoiser, LatentTextDenoiser)
    assert synthesizer.denoiser.prompts(torch.tensor([2])) == ["A realistic photo of two"]
    assert not any(p.requires_grad for p in synthesizer.denoiser.parameters())
    synthesizer.attach(_ce_loss(_LinearTeacher(3 * 64)))
    batch = synthesizer.render(4)
    assert batch.samples.shape == (4, 3, 8, 8)  # 16x16 decoded, resized with antialiasing
    assert batch.samples.min() >= 0 and batch.samples.max() <= 1
    assert batch.targets.tolist() == sorted(batch.targets.tolist())


def test_a_tiny_pixel_unet_and_a_gray_teacher_fed_by_an_rgb_model(
    pixel_model: Path, stable_diffusion: Path
) -> None:
    pixel = _synthesizer(pixel_model)
    assert isinstance(pixel.denoiser, PixelDenoiser)
    assert pixel.render(3).samples.shape == (3, 1, 8, 8)
    gray = _synthesizer(stable_diffusion, shape=(1, 4, 4), guidance_step=0.0)
    assert gray.render(2).samples.shape == (2, 1, 4, 4)


def test_a_missing_model_names_the_directory_and_the_command(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(MissingFileError, match=r"no diffusers model at .*nowhere.*download"):
        DiffusionSynthesizer(str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)  # the digits prior, not made yet: the config that makes it
    with pytest.raises(MissingFileError, match="configs/experiments/digits/diffusion_prior.yaml"):
        DiffusionSynthesizer("runs/digits/diffusion_prior/pipeline")
    hub_id = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # not in the cache: no download
    with pytest.raises(MissingFileError, match=f"no diffusers model '{hub_id}'.*download"):
        DiffusionSynthesizer(hub_id, local_files_only=True)
    with pytest.raises(CheckpointNotFoundError, match="digits/teacher_lenet5_bn_private.yaml`"):
        read_checkpoint("runs/digits/teacher_lenet5_bn_private/checkpoints/final.ckpt")


def test_diffusers_stays_out_of_the_start_up() -> None:
    code = (
        "import sys, dfkd_lightning.cli, dfkd_lightning.methods\nprint('diffusers' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------------------- guidance
def test_guidance_lowers_the_teachers_ce_against_unguided_sampling(pixel_model: Path) -> None:
    teacher = _LinearTeacher(64)
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ce = {}
    for name, step in (("unguided", 0.0), ("guided", 1.0)):
        synthesizer = _synthesizer(pixel_model, guidance_step=step)
        synthesizer.attach(_ce_loss(teacher))
        images = _generate(synthesizer, targets).samples
        ce[name] = F.cross_entropy(teacher(images), targets).item()
    assert ce["guided"] < 0.5 * ce["unguided"], ce


def test_gradients_reach_the_latents_and_the_releases_no_grad_x0_loses_them(
    pixel_model: Path,
) -> None:
    teacher, targets = _LinearTeacher(64), torch.tensor([0, 1, 2, 3])
    images = {}
    for name, options in {
        "unguided": dict(guidance_step=0.0),
        "guided": dict(),
        "no_grad_x0": dict(x0_gradients=False),
    }.items():
        synthesizer = _synthesizer(pixel_model, **options)
        seen: list[bool] = []

        def loss(batch: SyntheticBatch, seen=seen) -> torch.Tensor:
            seen.append(batch.samples.requires_grad)
            return _ce_loss(teacher)(batch)

        synthesizer.attach(loss)
        images[name] = _generate(synthesizer, targets).samples
        assert seen == ([] if name == "unguided" else [name == "guided"] * 6)
    assert not torch.allclose(images["guided"], images["unguided"])
    torch.testing.assert_close(images["no_grad_x0"], images["unguided"])  # what the bug does


def test_ddim_bf16_micro_batches_and_gradient_checkpointing(pixel_model: Path) -> None:
    synthesizer = _synthesizer(
        pixel_model,
        scheduler="ddim",
        dtype="bfloat16",
        micro_batch_size=2,
        gradient_checkpointing=True,
    )
    assert type(synthesizer.scheduler).__name__ == "DDIMScheduler"
    assert next(synthesizer.denoiser.parameters()).dtype == torch.bfloat16
    synthesizer.attach(_ce_loss(_LinearTeacher(64)))
    batch = synthesizer.render(5)
    assert batch.samples.dtype == torch.float32 and torch.isfinite(batch.samples).all()
    assert batch.samples.shape == (5, 1, 8, 8)


def test_saved_intermediate_x0_are_extra_samples(pixel_model: Path) -> None:
    synthesizer = _synthesizer(pixel_model, num_inference_steps=10, save_x0=True)
    assert synthesizer.settings.save_x0_at == (2, 4, 6, 8)
    synthesizer.attach(_ce_loss(_LinearTeacher(64)))
    batch = _generate(synthesizer, torch.tensor([0, 1]))
    assert len(batch) == 2 * 5 and batch.targets.tolist() == [0, 1] * 5  # final, then 4 saves


# ----------------------------------------------------------------------------- latent CutMix
def test_cutmix_box_and_weight_against_hand_computed_values() -> None:
    assert cutmix_box(0.75, 8, 8, (4, 4)) == (2, 6, 2, 6)  # side sqrt(0.25) * 8 = 4
    assert box_weight((2, 6, 2, 6), 8, 8) == 0.75
    assert cutmix_box(0.75, 8, 8, (0, 7)) == (0, 2, 5, 8)  # clipped at the border
    assert box_weight((0, 2, 5, 8), 8, 8) == 1 - 6 / 64
    latents = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    soft = F.one_hot(torch.tensor([0, 1]), 2).float()
    mixed, mixed_soft = mix_latents(latents, soft, torch.tensor([1, 0]), (0, 2, 0, 2))
    torch.testing.assert_close(mixed[0, :, :2, :2], latents[1, :, :2, :2])
    torch.testing.assert_close(mixed[0, :, 2:, :], latents[0, :, 2:, :])
    torch.testing.assert_close(mixed_soft, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_cutmix_partners_and_schedule() -> None:
    torch.manual_seed(0)
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    same = partners(targets, "same_class")
    assert torch.equal(targets[same], targets) and same[5] == 5
    assert sorted(partners(targets, "cross_class").tolist()) == list(range(6))
    cutmix = LatentCutMix("same_class")
    assert [s for s in range(50) if cutmix.due(s, 50)] == [10, 20, 30, 40]  # every N/5
    assert not LatentCutMix("none").due(10, 50)


def test_cross_class_cutmix_guides_toward_mixed_soft_targets(pixel_model: Path) -> None:
    synthesizer = _synthesizer(pixel_model, num_inference_steps=10, cutmix="cross_class")
    seen: list[torch.Tensor] = []
    ce = _ce_loss(_LinearTeacher(64))

    def loss(batch: SyntheticBatch) -> torch.Tensor:
        seen.append(batch.extras[SOFT_TARGETS])
        return ce(batch)

    synthesizer.attach(loss)
    _generate(synthesizer, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(seen[0], torch.eye(4))  # one-hot until the first mix
    assert torch.allclose(seen[-1].sum(1), torch.ones(4))
    assert not torch.equal(seen[-1], torch.eye(4))  # mixed at steps 2, 4, 6, 8


# ----------------------------------------------------------------------------- generation
def test_generation_is_split_by_rounds_and_resumes(pixel_model: Path, tmp_path: Path) -> None:
    synthesizer = _synthesizer(pixel_model, num_inference_steps=3)
    synthesizer.attach(_ce_loss(_LinearTeacher(64)))
    plan = GenerationPlan(num_classes=4, images_per_class=3, round_size=4, seed=5)
    assert [r.tolist() for r in plan.rounds()] == [[0, 0, 0, 1], [1, 1, 2, 2], [2, 3, 3, 3]]
    alone = generate_set(synthesizer, plan, tmp_path / "alone", progress=False)
    images, labels = load_exported(alone)
    assert labels.tolist() == plan.targets().tolist()
    # two ranks: rounds 0, 2 and 1; the same images as one rank makes
    for rank in (0, 1):
        generate_set(synthesizer, plan, tmp_path / "ranks", rank=rank, world_size=2, progress=False)
    index = read_index(tmp_path / "ranks")
    assert [entry["source"]["generation"]["rounds"] for entry in index["ranks"]] == [[0, 2], [1]]
    ranked, _ = load_exported(tmp_path / "ranks")
    torch.testing.assert_close(ranked[:4], images[:4])
    torch.testing.assert_close(ranked[4:8], images[8:])
    # an interrupted generation keeps its finished rounds and makes the same set
    made = synthesizer.generate
    calls: list[int] = []

    def interrupted(targets: torch.Tensor) -> SyntheticBatch:
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return made(targets)

    synthesizer.generate = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        generate_set(synthesizer, plan, tmp_path / "resumed", progress=False)
    calls.clear()
    synthesizer.generate = lambda targets: calls.append(1) or made(targets)  # type: ignore
    generate_set(synthesizer, plan, tmp_path / "resumed", progress=False)
    assert len(calls) == 2  # rounds 1 and 2; round 0 was kept
    torch.testing.assert_close(load_exported(tmp_path / "resumed")[0], images)
    # a finished set is reused, not made again
    calls.clear()
    generate_set(synthesizer, plan, tmp_path / "alone", progress=False)
    assert calls == []


# ----------------------------------------------------------------------------- the method
def _digits_args(pixel_model: Path, teacher: Path, config: str, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(DIGITS / f"{config}.yaml"),
        *QUIET,
        "--model.init_args.teacher_checkpoint",
        str(teacher),
        "--model.init_args.synthesizer.init_args.pretrained",
        str(pixel_model),
        "--model.init_args.synthesizer.init_args.num_inference_steps",
        "4",
        "--trainer.limit_val_batches",
        "1",
        "--test_after_fit",
        "false",
        *extra,
    ]


def _set_args(
    pixel_model: Path, teacher: Path, synthetic: Path, per_class: int, batch: int, epochs: int
) -> list[str]:
    """generate-then-distil on digits: ``per_class`` images per class in rounds of ``batch``
    into ``synthetic``, then ``epochs`` epochs of student batches of ``batch``."""
    return _digits_args(
        pixel_model,
        teacher,
        "diffdfkd",
        "--model.init_args.images_per_class",
        str(per_class),
        "--model.init_args.synthesis_batch_size",
        str(batch),
        "--data.init_args.synthetic_dir",
        str(synthetic),
        "--data.init_args.batch_size",
        str(batch),
        "--trainer.max_epochs",
        str(epochs),
    )


def test_generate_then_distil_writes_the_set_then_trains_on_it(
    pixel_model: Path, fake_teacher: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    args = _set_args(pixel_model, fake_teacher, synthetic, per_class=3, batch=10, epochs=2)
    args += ["--trainer.callbacks", '[{"class_path": "dfkd_lightning.callbacks.ClassBalance"}]']
    L.seed_everything(0)
    cli = DFKDCLI(args=args)
    images, labels = load_exported(synthetic)
    assert images.shape == (30, 1, 8, 8) and labels.bincount().tolist() == [3] * 10
    assert cli.model.student_steps == 2 * 3  # 30 images in batches of 10, 2 epochs
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert 0 <= metrics["synth/target_match"] <= 1  # the monitors saw the generated rounds
    index = read_index(synthetic)
    assert index["source"]["generation"]["fingerprint"]["x0_gradients"] is True


def test_online_mode_resumes_exactly(pixel_model: Path, fake_teacher: Path, tmp_path: Path) -> None:
    def run(max_epochs: int, ckpt: Path | None = None, save: Path | None = None) -> DFKDCLI:
        L.seed_everything(0)
        extra = ["--trainer.max_epochs", str(max_epochs)]
        extra += ["--ckpt_path", str(ckpt)] if ckpt else []
        cli = DFKDCLI(
            args=_digits_args(
                pixel_model,
                fake_teacher,
                "diffdfkd_online",
                "--data.init_args.steps_per_epoch",
                "3",
                "--model.init_args.kd_steps",
                "2",
                "--model.init_args.synthesis_batch_size",
                "4",
                "--model.init_args.batch_size",
                "4",
                "--trainer.limit_val_batches",
                "0",
                *extra,
            )
        )
        if save:
            cli.trainer.save_checkpoint(save, weights_only=False)
        return cli

    straight = run(2)
    assert len(straight.model.pool) == 4 * 4  # rounds at steps 0 and 2 of each epoch
    ckpt = tmp_path / "epoch1.ckpt"
    run(1, save=ckpt)
    resumed = run(2, ckpt=ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any("synthesizer" in key or "unet" in key for key in saved)  # frozen: not kept
    for key, value in straight.model.student.state_dict().items():
        torch.testing.assert_close(resumed.model.student.state_dict()[key], value)
    torch.testing.assert_close(resumed.model.pool.images(), straight.model.pool.images())


@pytest.mark.slow
def test_generation_under_two_process_cpu_ddp_writes_two_disjoint_shards(
    pixel_model: Path, fake_teacher: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    args = _set_args(pixel_model, fake_teacher, synthetic, per_class=2, batch=5, epochs=1)[1:]
    fit_with_cpu_ddp(args, tmp_path, "ddp_find_unused_parameters_true")
    index = read_index(synthetic)
    rounds = [entry["source"]["generation"]["rounds"] for entry in index["ranks"]]
    assert rounds == [[0, 2], [1, 3]]
    shards = [load_exported(synthetic / f"rank_0{rank}") for rank in (0, 1)]
    assert [len(labels) for _, labels in shards] == [10, 10]
    first, second = (images.flatten(1) for images, _ in shards)
    assert torch.cdist(first.float(), second.float()).min() > 0  # no image in both shards
    labels = torch.cat([labels for _, labels in shards])
    assert labels.bincount().tolist() == [2] * 10


def test_the_cifar_config_runs_with_a_stable_diffusion_directory(
    stable_diffusion: Path, tmp_path: Path
) -> None:
    """The paper's CIFAR-10 config, with a tiny SD pipeline, a random WRN-16-2 as the
    teacher and fake images: text conditioning, CFG, the VAE decode and the resize."""
    teacher = tmp_path / "wrn_16_2.pt"
    torch.save(build_classifier("wrn_16_2", 10, 3).state_dict(), teacher)
    synthetic = tmp_path / "synthetic"
    args = [
        "fit",
        "--config",
        str(CONFIGS / "experiments/cifar10/diffdfkd_wrn_40_2_wrn_16_2.yaml"),
        *QUIET,
        "--data.init_args.dataset",
        "fake",
        "--data.init_args.synthetic_dir",
        str(synthetic),
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.batch_size",
        "5",
        "--model.init_args.teacher",
        "wrn_16_2",
        "--model.init_args.teacher_checkpoint",
        str(teacher),
        "--model.init_args.images_per_class",
        "1",
        "--model.init_args.synthesis_batch_size",
        "5",
        "--model.init_args.synthesizer.init_args.pretrained",
        str(stable_diffusion),
        "--model.init_args.synthesizer.init_args.num_inference_steps",
        "2",
        "--model.init_args.synthesizer.init_args.dtype",
        "float32",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_val_batches",
        "1",
        "--test_after_fit",
        "false",
    ]
    cli = DFKDCLI(args=args)
    images, labels = load_exported(synthetic)
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == list(range(10))
    assert cli.model.student_steps == 2
    assert read_index(synthetic)["source"]["generation"]["fingerprint"]["guidance_scale"] == 3.0
