"""DE-DFKD: the conditional generator, the metric-learning losses and terms, the method."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    CONFIGS,
    QUIET,
    few_batches,
    quick_trainer,
    small_method_options,
    tiny_fake_run,
    write_fake_mnist,
)

from dfkd_lightning.callbacks import SampleCallback
from dfkd_lightning.cli import DFKDCLI
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.methods import DEDFKD
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.diversity import (
    class_separation_loss,
    intra_class_spread_loss,
    mode_seeking_loss,
)
from dfkd_lightning.synthesis.synthesizers import (
    LATENT,
    ConditionalGenerator,
    PersistentGenerator,
    SampleSpec,
    balanced_targets,
)
from dfkd_lightning.synthesis.terms import TERMS

SPEC = SampleSpec(shape=(1, 8, 8), num_classes=10, batch_size=120)


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    monkeypatch.chdir(tmp_path)


def _bound(**options) -> ConditionalGenerator:
    torch.manual_seed(0)
    generator = ConditionalGenerator(nz=16, ngf=4, **options)
    generator.bind(SPEC)
    return generator


# ------------------------------------------------------------------ the conditional generator
def test_balanced_targets_have_exact_counts_and_a_random_start() -> None:
    torch.manual_seed(0)
    counts = torch.bincount(balanced_targets(120, 10, torch.device("cpu")), minlength=10)
    assert counts.tolist() == [12] * 10
    uneven = torch.bincount(balanced_targets(23, 10, torch.device("cpu")), minlength=10)
    assert uneven.sum() == 23 and set(uneven.tolist()) == {2, 3}
    firsts = {int(balanced_targets(5, 10, torch.device("cpu"))[0]) for _ in range(50)}
    assert len(firsts) > 1  # the start moves, so no class is favoured across batches


@pytest.mark.parametrize(
    ("options", "width"),
    [({}, 16), ({"conditioning": "concat", "embedding_dim": 10}, 26)],
    ids=["product", "concat"],
)
def test_conditional_generator_shapes(options: dict, width: int) -> None:
    generator = _bound(**options)
    assert generator.generator is not None and generator.embedding is not None
    assert generator.generator.l1[0].in_features == width
    assert generator.embedding.weight.shape == (10, options.get("embedding_dim", 16))
    batch = generator.render()
    assert batch.samples.shape == (120, 1, 8, 8)
    assert batch.targets is not None and batch.extras[LATENT].shape == (120, 16)
    assert torch.bincount(batch.targets, minlength=10).tolist() == [12] * 10
    assert generator.sample(30).targets is not None


@pytest.mark.parametrize("conditioning", ["product", "concat"])
def test_conditional_generator_uses_the_label(conditioning: str) -> None:
    generator = _bound(conditioning=conditioning)
    generator.eval()  # BN on running statistics: each sample independent of the others
    z = torch.randn(4, 16)
    zeros, threes = torch.zeros(4, dtype=torch.long), torch.full((4,), 3, dtype=torch.long)
    as_zero = generator.conditioned(z, zeros)
    assert not torch.allclose(as_zero.samples, generator.conditioned(z, threes).samples)
    as_zero.samples.sum().backward()
    assert generator.embedding is not None
    grad = generator.embedding.weight.grad
    assert grad is not None and grad[0].abs().sum() > 0
    assert grad[1:].abs().sum() == 0  # only the embedding row of the asked class learns


def test_render_last_is_the_last_render_without_gradients() -> None:
    generator = _bound()
    generator.eval()
    first = generator.render(20)
    again = generator.render_last()
    assert not again.samples.requires_grad
    torch.testing.assert_close(again.samples, first.samples.detach())
    assert torch.equal(again.targets, first.targets)


def test_conditional_generator_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="embedding_dim must equal nz"):
        ConditionalGenerator(nz=16, embedding_dim=8)
    with pytest.raises(ConfigError, match="conditioning"):
        ConditionalGenerator(conditioning="sum")
    with pytest.raises(ConfigError, match="targets"):
        ConditionalGenerator(targets="sorted")
    with pytest.raises(ConfigError, match="needs classes"):
        ConditionalGenerator().bind(SampleSpec(shape=(1, 8, 8), num_classes=0))


# ------------------------------------------------------------------ L_ml against hand values
UNIT = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
D01, D12, D13 = math.sqrt(0.4), math.sqrt(0.8), math.sqrt(3.6)
SQRT2 = math.sqrt(2.0)


def test_intra_class_spread_against_hand_values() -> None:
    labels = torch.tensor([0, 0, 1])
    # one same-class pair (both orders), d = sqrt(0.2^2 + 0.6^2); scale does not matter
    spread = intra_class_spread_loss(3.0 * UNIT[:3], labels, margin=0.8)
    assert spread.item() == pytest.approx(0.8 - D01, abs=1e-5)
    assert intra_class_spread_loss(UNIT[:3], labels, margin=0.5).item() == pytest.approx(0.0)
    assert intra_class_spread_loss(UNIT[:3], torch.tensor([0, 1, 2])).item() == 0.0


def test_class_separation_against_hand_values() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    # anchor: hardest positive - nearest negative + margin 1
    expected = [D01 - SQRT2 + 1, D01 - D12 + 1, SQRT2 - D12 + 1, SQRT2 - D13 + 1]
    separation = class_separation_loss(UNIT, labels, margin=1.0)
    assert separation.item() == pytest.approx(sum(expected) / 4, abs=1e-5)
    # anchor 0 alone is clear of the other class by more than 0.7: only 1, 2, 3 count
    hinge = [max(0.0, e - 1 + 0.7) for e in expected]
    assert class_separation_loss(UNIT, labels, margin=0.7).item() == pytest.approx(
        sum(hinge) / 4, abs=1e-5
    )
    assert class_separation_loss(UNIT, torch.zeros(4, dtype=torch.long)).item() == 0.0


def test_mode_seeking_against_hand_values() -> None:
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 5.0]])
    latents = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # pair (0, 1): mean|df| 1 / mean|dz| 1 = 1; pair (2, 3): 2 / 1 = 2
    loss = mode_seeking_loss(features, latents, labels, eps=0.0)
    assert loss.item() == pytest.approx((1 / 1 + 1 / 2) / 2, abs=1e-6)
    assert mode_seeking_loss(features, latents, torch.arange(4)).item() == 0.0


def test_the_losses_have_finite_gradients_on_coinciding_samples() -> None:
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    for loss in (
        intra_class_spread_loss(features, labels),
        class_separation_loss(features, labels),
        mode_seeking_loss(features, torch.randn(4, 3), labels),
    ):
        (grad,) = torch.autograd.grad(loss, features)
        assert torch.isfinite(grad).all()


def test_spreading_lowers_the_spread_loss() -> None:
    torch.manual_seed(0)
    features = (torch.randn(12, 8) * 0.05 + torch.tensor([1.0] + [0.0] * 7)).requires_grad_()
    labels = torch.arange(12) % 3
    optimizer = torch.optim.SGD([features], lr=0.5)
    before = intra_class_spread_loss(features, labels).item()
    for _ in range(50):
        optimizer.zero_grad()
        intra_class_spread_loss(features, labels).backward()
        optimizer.step()
    assert intra_class_spread_loss(features, labels).item() < 0.5 * before


# ------------------------------------------------------------------ the terms and the method
def test_ml_term_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="variant"):
        TERMS["ml"](variant="triplet")
    with pytest.raises(ConfigError, match=r"\[0, 2\]"):
        TERMS["ml"](spread_margin=3.0)


class TargetCounts(SampleCallback):
    """Records the per-class counts of every batch the student is given."""

    def __init__(self) -> None:
        self.counts: list[list[int]] = []

    def on_samples_synthesized(self, trainer, module, batch: SyntheticBatch) -> None:
        assert batch.targets is not None
        self.counts.append(torch.bincount(batch.targets, minlength=10).tolist())


def _method(teacher: Path, **overrides) -> tuple[DEDFKD, ClassificationDataModule]:
    data = ClassificationDataModule("digits", channels=1, train_source="steps", steps_per_epoch=4)
    options = small_method_options(
        teacher, data, batch_size=20, synthesis_batch_size=30, synthesis_size=8, kd_steps=2
    )
    options.update(overrides)
    return DEDFKD(**options), data


def test_every_batch_of_a_run_is_class_balanced(fake_teacher: Path, tmp_path: Path) -> None:
    model, data = _method(fake_teacher, student_loss={"kd": 1.0, "ce": 0.5})
    synthesized: list[list[int]] = []
    render = model.synthesizer.render

    def recording_render(n: int | None = None) -> SyntheticBatch:
        batch = render(n)
        synthesized.append(torch.bincount(batch.targets, minlength=10).tolist())
        return batch

    model.synthesizer.render = recording_render
    counts = TargetCounts()
    trainer = quick_trainer(tmp_path, 1, callbacks=[counts], limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    assert counts.counts and all(c == [2] * 10 for c in counts.counts)  # student, batch 20
    generator_steps = [c for c in synthesized if sum(c) == 30]
    assert generator_steps and all(c == [3] * 10 for c in generator_steps)
    metrics = trainer.callback_metrics
    for name in ("synth/ml", "synth/ml_spread", "synth/ml_separation", "train/ce"):
        assert torch.isfinite(metrics[name]), name


def test_student_ce_is_the_cross_entropy_to_the_targets(fake_teacher: Path) -> None:
    model, _ = _method(fake_teacher)
    ce = TERMS["ce"]()
    torch.manual_seed(0)
    batch = model.synthesizer.sample(10)
    logits = model.student(model.normalize(model.to_input_size(batch.samples)))

    class Context:
        targets = batch.targets

        @staticmethod
        def student_output():
            return type("Out", (), {"logits": logits})

    torch.testing.assert_close(ce(Context), F.cross_entropy(logits, batch.targets))
    Context.targets = None
    with pytest.raises(ConfigError, match="aims at no class"):
        ce(Context)


def test_mode_seeking_needs_a_generator_with_latents(fake_teacher: Path) -> None:
    with pytest.raises(ConfigError, match="carry none"):
        tiny_fake_run(
            "dedfkd_unconditional",
            fake_teacher,
            "--model.init_args.synthesis_loss.ml",
            "{variant: mode_seeking}",
        )


def test_the_unconditional_ablation_labels_by_the_teacher(fake_teacher: Path) -> None:
    cli = tiny_fake_run("dedfkd_unconditional", fake_teacher)
    assert isinstance(cli.model.synthesizer, PersistentGenerator)
    assert not isinstance(cli.model.synthesizer, ConditionalGenerator)
    assert torch.isfinite(cli.trainer.callback_metrics["synth/ml_separation"])


def test_the_mnist_experiments_run_on_mnist_files(tmp_path: Path) -> None:
    """configs/experiments/mnist: the teacher, then DE-DFKD from its checkpoint (the default
    path), on MNIST's raw files in data/mnist (random ones here: nothing is downloaded)."""
    write_fake_mnist(tmp_path / "data" / "mnist", train=64, test=16)
    mnist = CONFIGS / "experiments" / "mnist"
    cpu = ["--trainer.accelerator", "cpu", "--data.init_args.num_workers", "0"]
    teacher = ["--config", str(mnist / "teacher_lenet5_bn.yaml"), *QUIET[:4]]
    DFKDCLI(args=["fit", *teacher, *few_batches(train=2), *cpu])
    assert Path("runs/mnist/teacher_lenet5_bn/checkpoints/final.ckpt").is_file()
    small = ["--model.init_args.batch_size", "20", "--model.init_args.synthesis_batch_size", "20"]
    cli = DFKDCLI(
        args=["fit", "--config", str(mnist / "dedfkd.yaml"), *QUIET, *few_batches(2), *cpu, *small]
    )
    assert isinstance(cli.model, DEDFKD) and cli.model.student_steps == 2
    assert cli.datamodule.dataset == "mnist" and "test/acc" in cli.trainer.callback_metrics
