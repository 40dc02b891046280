"""Where the classic methods follow (or knowingly leave) their papers' released code."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import small_method_options

from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.errors import ConfigError
from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods import CMI, DFQ
from dfkd_lightning.nets import build_classifier
from dfkd_lightning.synthesis.batch import SyntheticBatch
from dfkd_lightning.synthesis.losses import adversarial_kl_loss
from dfkd_lightning.synthesis.synthesizers import MetaGenerator, SampleSpec
from dfkd_lightning.synthesis.terms import build_objective
from dfkd_lightning.synthesis.terms.contrastive import CMI_FEATURES

DATA = ClassificationDataModule("fake", channels=1, train_source="steps", batch_size=8)


def _cifar_cmi(tmp_path: Path, teacher: str) -> CMI:
    path = tmp_path / f"{teacher}.pt"
    torch.save(build_classifier(teacher, num_classes=10).state_dict(), path)
    return CMI(
        teacher=teacher,
        student="resnet18",
        teacher_checkpoint=str(path),
        batch_size=4,
        synthesis_batch_size=4,
        kd_steps=2,
        g_steps=2,
        synthesis_loss={"cr": {"weight": 0.8, "bank_size": 64, "n_neg": 8}},
    )


def test_cmi_features_of_a_resnet34_teacher_are_the_inputs_of_its_four_stages(
    tmp_path: Path,
) -> None:
    """As the release's datafree_kd.py: 64 + 64 + 128 + 256 = 512 values, not every BN input
    (8,512, a 75 M-parameter head)."""
    model = _cifar_cmi(tmp_path, "resnet34")
    term = model.synthesis_objective.terms["cr"]
    assert term.feature_layers == ("layer1", "layer2", "layer3", "layer4")
    assert term.head is not None and term.memory_bank is not None
    assert sum(p.numel() for p in term.head.parameters()) < 1_000_000
    assert term.memory_bank.data.shape[1] == 2 * 512
    batch = model.synthesizer.render(4)
    _, values, ctx = model.synthesis_context(batch, {"cr": 0.8})
    assert ctx.keep[CMI_FEATURES].shape == (4, 2 * 512)  # (local, global) per sample
    assert torch.isfinite(values["cr"])
    assert not any(m._forward_hooks for m in model.teacher.modules())  # removed after the step


def test_cmi_features_of_other_teachers_are_every_bn_input(fake_teacher: Path) -> None:
    model = CMI(**small_method_options(fake_teacher, DATA))
    term = model.synthesis_objective.terms["cr"]
    bn_channels = sum(
        m.num_features for m in model.teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert term.feature_layers == "bn" and term.memory_bank.data.shape[1] == 2 * bn_channels
    with pytest.raises(ConfigError, match="feature_layers"):
        build_objective({"cr": {"feature_layers": "all"}})


def test_cmis_head_trains_with_adams_default_betas_in_a_group_of_its_own(tmp_path: Path) -> None:
    model = _cifar_cmi(tmp_path, "resnet34")
    optimizers = model.configure_optimizers()  # no scheduler: the list alone
    head = {id(p) for p in model.synthesis_objective.terms["cr"].parameters()}
    groups = optimizers[1].param_groups
    assert [g["betas"] for g in groups] == [(0.5, 0.999), (0.9, 0.999)]
    assert {id(p) for p in groups[1]["params"]} == head
    assert not head & {id(p) for p in groups[0]["params"]}
    generator = {id(p) for p in model.synthesizer.parameters()}
    assert {id(p) for p in groups[0]["params"]} == generator


def test_dfqs_adversarial_term_uses_its_temperature(fake_teacher: Path) -> None:
    torch.manual_seed(0)
    adversary = {"weight": 1.0, "agreeing_only": False, "temperature": 4.0}
    model = DFQ(**small_method_options(fake_teacher, DATA, synthesis_loss={"adv": adversary}))
    batch = model.synthesizer.render(8)
    _, values, ctx = model.synthesis_context(batch, {"adv": 1.0})
    student = model.student(ctx.inputs)
    at_4 = adversarial_kl_loss(student, ctx.teacher.logits, 4.0, agreeing_only=False)
    at_1 = adversarial_kl_loss(student, ctx.teacher.logits, 1.0, agreeing_only=False)
    torch.testing.assert_close(values["adv"], at_4)
    assert not torch.allclose(values["adv"], at_1)


def test_the_release_kl_reduction_also_divides_by_the_class_count() -> None:
    """ZSKT's release: F.kl_div(..., reduction="mean") over (batch, classes)."""
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    released = torch.nn.functional.kl_div(
        student.log_softmax(1), teacher.softmax(1), reduction="sum"
    ) / (6 * 10)
    torch.testing.assert_close(kd_loss(student, teacher, reduction="mean"), released)
    torch.testing.assert_close(
        adversarial_kl_loss(student, teacher, agreeing_only=False, reduction="mean"), -released
    )
    with pytest.raises(ConfigError, match="batchmean"):
        build_objective({"kd": {"reduction": "sum"}})


def test_a_term_starts_at_its_start_epoch() -> None:
    objective = build_objective({"oh": 1.0, "adv": {"weight": 1.1, "start_epoch": 19}})
    assert objective.active(epoch=18) == {"oh": 1.0}
    assert objective.active(epoch=19) == {"oh": 1.0, "adv": 1.1}
    with pytest.raises(ConfigError, match="start_epoch"):
        build_objective({"adv": {"start_epoch": -1}})


def test_fastdfkd_resets_l0_at_the_releases_round() -> None:
    """The release resets at its (120 + warmup)-th round counted from 1: epoch 139 from 0."""
    synthesizer = MetaGenerator()
    synthesizer.bind(SampleSpec(shape=(1, 8, 8), num_classes=3, batch_size=4, steps_per_round=2))
    synthesizer.begin_round(epoch=138)
    assert not synthesizer.l0_was_reset
    synthesizer.begin_round(epoch=139)
    assert synthesizer.l0_was_reset


def test_fomaml_meta_step_equals_the_releases_ordering() -> None:
    """The release steps the meta optimizer right after adding the last inner gradient, before
    the last inner update; here it steps after the round. The meta updates are the same."""
    torch.manual_seed(0)
    ours = MetaGenerator(reset_l0=False)
    ours.bind(SampleSpec(shape=(1, 8, 8), num_classes=3, batch_size=4, steps_per_round=3))
    released = copy.deepcopy(ours)

    def loss(batch: SyntheticBatch) -> torch.Tensor:
        return (batch.samples - 0.3).pow(2).mean()

    fast, _ = ours.configure_optimizers()
    torch.manual_seed(1)
    ours.begin_round()
    for _ in range(3):
        fast.zero_grad()
        loss(ours.render()).backward()
        fast.step()
        ours.after_step()
    ours.end_round(ours.render().detach())

    fast, meta = released.configure_optimizers()
    torch.manual_seed(1)
    released.begin_round()
    for step in range(3):
        fast.zero_grad()
        loss(released.render()).backward()
        if step == 0:
            meta.zero_grad()
        for meta_p, fast_p in zip(
            released.generator.parameters(), released.fast_generator.parameters(), strict=True
        ):
            meta_p.grad = fast_p.grad.clone() if meta_p.grad is None else meta_p.grad + fast_p.grad
        if step == 2:
            meta.step()
        fast.step()
    for a, b in zip(ours.generator.parameters(), released.generator.parameters(), strict=True):
        torch.testing.assert_close(a, b)
