"""RGAL: the relation losses against hand-computed values, its terms, paired views, and RGAL
inserted into CMI by YAML."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import SMALL_BANK, small_method_options, tiny_fake_run

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.synthesis.relation import (
    inverse_density_log_weight,
    negative_probabilities,
    sample_triplets,
    triplet_loss,
    unit_distances,
)
from dfkd_lightning.synthesis.terms import build_objective
from dfkd_lightning.synthesis.terms.relation import (
    ChannelDistillationTerm,
    RelationTripletTerm,
    StudentTripletTerm,
)


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    monkeypatch.chdir(tmp_path)


def on_circle(*angles: float) -> torch.Tensor:
    """Unit vectors in the plane; the chord between angles a and b is 2 sin(|a - b| / 2)."""
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], dim=1).float()


def chord(distance: float) -> float:
    """The angle whose chord on the unit circle is ``distance``."""
    return 2 * math.asin(distance / 2)


# ------------------------------------------------------------------ distances and weights
def test_inverse_density_weight_by_hand() -> None:
    d = torch.tensor([1.0, 0.5])
    # D = 4: (2 - 4) log d - (1 / 2) log(1 - d^2 / 4)
    expected = torch.tensor(
        [-0.5 * math.log(0.75), -2 * math.log(0.5) - 0.5 * math.log(1 - 1 / 16)]
    )
    torch.testing.assert_close(inverse_density_log_weight(d, 4), expected)
    # D = 3: only the log d part; D = 2: only the sphere part
    torch.testing.assert_close(inverse_density_log_weight(d, 3), -d.log())
    assert torch.isfinite(inverse_density_log_weight(torch.tensor([0.0, 2.0]), 128)).all()


def test_unit_distances_by_hand() -> None:
    e = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])  # normalised first
    d = unit_distances(e)
    expected = torch.tensor(
        [[0.0, math.sqrt(2), 2.0], [math.sqrt(2), 0.0, math.sqrt(2)], [2.0, math.sqrt(2), 0.0]]
    )
    torch.testing.assert_close(d, expected)


def _distances_from_anchor(*negatives: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample 0 is the anchor (label 0); sample 1 its positive at angle 0.01; then one
    negative (label 1) per distance in ``negatives``."""
    angles = [0.0, 0.01, *(chord(d) for d in negatives)]
    labels = torch.tensor([0, 0, *([1] * len(negatives))])
    return unit_distances(on_circle(*angles)), labels


def test_focal_sampling_keeps_only_the_window() -> None:
    distances, labels = _distances_from_anchor(0.3, 0.7, 0.9, 1.2)
    p = negative_probabilities(distances, labels, 4, mode="focal", low=0.5, high=1.0)[0]
    w = inverse_density_log_weight(torch.tensor([0.7, 0.9]), 4).exp()
    torch.testing.assert_close(p[3:5], w / w.sum(), atol=1e-5, rtol=1e-4)
    assert p[0] == 0 and p[1] == 0  # itself and its positive
    assert p[2] == 0 and p[5] == 0  # 0.3 and 1.2 lie outside 0.5 < d < 1.0
    torch.testing.assert_close(p.sum(), torch.tensor(1.0))


def test_focal_sampling_without_negative_in_the_window_is_uniform() -> None:
    distances, labels = _distances_from_anchor(0.2, 1.5, 1.9)
    p = negative_probabilities(distances, labels, 4, mode="focal", low=0.5, high=1.0)[0]
    torch.testing.assert_close(p, torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 1 / 3]))


def test_distance_weighted_sampling_clamps_and_cuts() -> None:
    distances, labels = _distances_from_anchor(0.3, 0.7, 1.3, 1.5)
    p = negative_probabilities(distances, labels, 2, mode="distance", low=0.5, high=1.4)[0]
    # D = 2: w(d) = (1 - d^2 / 4)^(1/2); 0.3 counts as 0.5; 1.5 is beyond 1.4
    w = torch.tensor([0.5, 0.7, 1.3]).pow(2).neg().div(4).add(1).sqrt()
    torch.testing.assert_close(p[2:5], w / w.sum(), atol=1e-5, rtol=1e-4)
    assert p[5] == 0


def test_sampled_triplets_are_same_label_pairs_with_other_label_negatives() -> None:
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    anchor, positive, negative = sample_triplets(
        torch.randn(6, 8), labels, mode="focal", low=0.5, high=1.0
    )
    assert len(anchor) == 3 * 2 + 2 * 1  # ordered same-label pairs
    assert (labels[anchor] == labels[positive]).all() and (anchor != positive).all()
    assert (labels[anchor] != labels[negative]).all()
    assert sample_triplets(torch.randn(4, 8), torch.zeros(4), mode="focal", low=0.5, high=1) is None
    assert (
        sample_triplets(torch.randn(3, 8), torch.arange(3), mode="focal", low=0.5, high=1) is None
    )


# ------------------------------------------------------------------ the hinge and its sign
def test_triplet_loss_both_signs_by_hand() -> None:
    # anchor at 0, positive at d = 1.2, negative at d = 0.6 (angles on the circle)
    e = on_circle(0.0, chord(1.2), -chord(0.6))
    triplets = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    ordinary = triplet_loss([e], triplets, margin=0.2, sign="ordinary")
    reversed_ = triplet_loss([e], triplets, margin=0.2, sign="reversed")
    torch.testing.assert_close(ordinary, torch.tensor(1.2 - 0.6 + 0.2), atol=1e-5, rtol=0)
    torch.testing.assert_close(reversed_, torch.tensor(0.0))  # 0.6 - 1.2 + 0.2 < 0
    # summed over blocks, each pooled (N, C, H, W) and normalised
    spatial = e[:, :, None, None].expand(3, 2, 4, 4) * 5.0
    both = triplet_loss([e, spatial], triplets, margin=0.2, sign="ordinary")
    torch.testing.assert_close(both, 2 * ordinary)


@pytest.mark.parametrize(("sign", "grows"), [("paper", True), ("release", False)])
def test_paper_sign_pushes_positives_apart(sign: str, grows: bool) -> None:
    """A gradient step on the synthesis triplet: the paper's sign moves the anchor away from
    its positive, the release's towards it."""
    term = RelationTripletTerm(sign=sign, margin=0.5)
    points = on_circle(0.0, 0.3, 2.5).requires_grad_()
    triplets = (torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    loss = triplet_loss([points], triplets, margin=term.margin, sign=term.sign)
    loss.backward()
    with torch.no_grad():
        moved = points - 0.1 * points.grad
    before, after = unit_distances(points.detach())[0, 1], unit_distances(moved)[0, 1]
    assert (after > before) == grows


def test_bad_windows_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="0 <= low < high <= 2"):
        RelationTripletTerm(low=1.0, high=0.5)
    with pytest.raises(ConfigError, match="0 <= low < high <= 2"):
        StudentTripletTerm(high=2.5)
    with pytest.raises(ConfigError, match="sign"):
        RelationTripletTerm(sign="ordinary")
    with pytest.raises(ConfigError, match="network"):
        RelationTripletTerm(network="generator")


# ------------------------------------------------------------------ cd
def test_pooled_linear_adapter_is_a_1x1_convolution_then_pooling() -> None:
    conv = torch.nn.Conv2d(3, 5, 1)
    linear = torch.nn.Linear(3, 5)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        linear.bias.copy_(conv.bias)
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(linear(x.mean(dim=(2, 3))), conv(x).mean(dim=(2, 3)))


class _Stub:
    """What a term's bind reads from a method."""

    def __init__(self, teacher: torch.nn.Module, student: torch.nn.Module) -> None:
        self.teacher, self.student, self.input_shape = teacher, student, (1, 32, 32)


def test_cd_by_hand_on_lenet_penultimate_features() -> None:
    from dfkd_lightning.nets import build_classifier
    from dfkd_lightning.synthesis.terms.context import NetOutput, StepContext

    term = ChannelDistillationTerm()
    term.bind(_Stub(build_classifier("lenet5_bn", 10, 1), build_classifier("lenet5_half", 10, 1)))
    [adapter] = term.adapters
    assert (adapter.in_features, adapter.out_features) == (60, 120)
    assert term.needs.teacher_features and term.needs.student_features
    s, t = torch.randn(4, 60), torch.randn(4, 120)
    ctx = StepContext(
        batch=None,  # type: ignore[arg-type]
        inputs=torch.zeros(4, 1, 32, 32),
        teacher=NetOutput(torch.zeros(4, 10), features=t),
        student=NetOutput(torch.zeros(4, 10), features=s),
        phase="student",
        module=None,  # type: ignore[arg-type]
    )
    expected = ((s @ adapter.weight.t() + adapter.bias - t) ** 2).mean()
    torch.testing.assert_close(term(ctx), expected)


def test_cd_pairs_resnet_stages_and_adapts_their_channels() -> None:
    from dfkd_lightning.nets import build_classifier

    term = ChannelDistillationTerm()
    stub = _Stub(build_classifier("resnet34", 10, 3), build_classifier("resnet18", 10, 3))
    stub.input_shape = (3, 32, 32)
    term.bind(stub)
    assert term.teacher_stages == ("layer1", "layer2", "layer3", "layer4")
    assert [(a.in_features, a.out_features) for a in term.adapters] == [
        (64, 64),
        (128, 128),
        (256, 256),
        (512, 512),
    ]


def test_cd_on_penultimate_features_is_one_alignment_head() -> None:
    from dfkd_lightning.nets import build_classifier

    term = ChannelDistillationTerm(penultimate=True)  # DDA's release's alignment head
    stub = _Stub(build_classifier("wrn_40_2", 10, 3), build_classifier("wrn_16_1", 10, 3))
    stub.input_shape = (3, 32, 32)
    term.bind(stub)
    assert [(a.in_features, a.out_features) for a in term.adapters] == [(64, 128)]
    assert term.needs.teacher_features and not term.needs.teacher_stages
    with pytest.raises(ValueError, match="not both"):
        ChannelDistillationTerm(teacher_stages=["block1"], penultimate=True)


def test_triplet_features_default_to_stages_two_to_four_or_the_penultimate() -> None:
    from dfkd_lightning.nets import build_classifier

    resnet = _Stub(build_classifier("resnet34", 10, 3), build_classifier("resnet18", 10, 3))
    lenet = _Stub(build_classifier("lenet5_bn", 10, 1), build_classifier("lenet5_half", 10, 1))
    synthesis = RelationTripletTerm()
    synthesis.bind(resnet)
    assert synthesis.needs.teacher_stages == ("layer3", "layer4")
    release = RelationTripletTerm(sign="release", network="student", sample_on="logits")
    release.bind(resnet)
    assert release.needs.student_stages == ("layer3", "layer4") and release.needs.student
    synthesis.bind(lenet)
    assert synthesis.needs.teacher_features and not synthesis.needs.teacher_stages
    student = StudentTripletTerm()
    student.bind(resnet)
    assert student.needs.student_features and student.needs.student


def test_a_switched_off_term_is_not_bound() -> None:
    from dfkd_lightning.nets import build_classifier

    objective = build_objective({"kd": 1.0, "cd": 0.0})
    objective.bind(
        _Stub(build_classifier("lenet5_bn", 10, 1), build_classifier("lenet5_half", 10, 1))
    )
    assert len(list(objective.parameters())) == 0


# ------------------------------------------------------------------ methods from YAML
def test_paired_views_draw_each_pool_image_twice(fake_teacher: Path) -> None:
    cli = tiny_fake_run("rgal", fake_teacher)
    model = cli.model
    assert model.paired_views and model.student_steps == 4
    torch.manual_seed(0)
    batch, pooled = model.student_batch()
    assert pooled and len(batch) == model.batch_size
    first, second = batch.samples.chunk(2)
    torch.testing.assert_close(first, second)
    # the student's augmenter draws its crop and flip per sample: the views differ
    views = model.network_inputs(batch.samples, model.student_augmenter)
    assert not torch.equal(*views.chunk(2))
    metrics = cli.trainer.callback_metrics
    assert {"synth/triplet", "train/cd", "train/striplet"} <= metrics.keys()
    assert [n for n, _ in model.student_objective.named_parameters()] == [
        "terms.cd.adapters.0.weight",
        "terms.cd.adapters.0.bias",
    ]
    student_optimizer = model.optimizers()[0].optimizer
    student_params = {id(p) for g in student_optimizer.param_groups for p in g["params"]}
    assert all(id(p) in student_params for p in model.student_objective.parameters())


def test_paired_views_need_a_pool_and_an_even_batch(fake_teacher: Path) -> None:
    from dfkd_lightning.data import ClassificationDataModule
    from dfkd_lightning.methods import RGAL

    data = ClassificationDataModule("fake", channels=1, train_source="steps", steps_per_epoch=4)
    with pytest.raises(ConfigError, match="even batch_size, got pool and 7"):
        RGAL(**small_method_options(fake_teacher, data, batch_size=7))
    with pytest.raises(ConfigError, match="student_samples: pool"):
        RGAL(**small_method_options(fake_teacher, data, student_samples="fresh"))
    assert not RGAL(**small_method_options(fake_teacher, data, paired_views=False)).paired_views


def test_cmi_rgal_with_rgal_off_ends_as_plain_cmi(fake_teacher: Path) -> None:
    seed = ["--seed_everything", "0"]
    plain = tiny_fake_run("cmi", fake_teacher, *SMALL_BANK["cmi"], *seed).model
    switched_off = tiny_fake_run(
        "cmi_rgal",
        fake_teacher,
        *SMALL_BANK["cmi"],
        *seed,
        "--model.init_args.synthesis_loss.triplet",
        "{weight: 0.0}",
        "--model.init_args.student_loss.cd",
        "0.0",
        "--model.init_args.student_loss.striplet",
        "{weight: 0.0}",
        "--model.init_args.paired_views",
        "false",
    ).model
    assert "triplet" in switched_off.synthesis_objective
    for key, value in plain.student.state_dict().items():
        torch.testing.assert_close(
            switched_off.student.state_dict()[key], value, rtol=0, atol=0, msg=key
        )
    inserted = tiny_fake_run("cmi_rgal", fake_teacher, *SMALL_BANK["cmi"], *seed).model
    assert any(
        not torch.equal(inserted.student.state_dict()[key], value)
        for key, value in plain.student.state_dict().items()
    )
