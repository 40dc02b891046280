"""The core's parts: synthesizers, loss terms, the loop's bookkeeping, callbacks, old runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import DIGITS_EXPERIMENTS, quick_trainer, small_method_options, tiny_fake_run
from torch import nn

from dfkd_lightning.callbacks import SampleCallback
from dfkd_lightning.catalog import catalog
from dfkd_lightning.catalog import main as list_main
from dfkd_lightning.cli import DFKDCLI, main
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.losses import kd_loss
from dfkd_lightning.methods import DATA_FREE_METHODS, DataFreeDistillation
from dfkd_lightning.methods.datafree import CheckpointFormatError
from dfkd_lightning.synthesis import losses
from dfkd_lightning.synthesis.batch import NO_TARGET, SyntheticBatch
from dfkd_lightning.synthesis.synthesizers import (
    SYNTHESIZERS,
    ConditionalGenerator,
    LearnablePixels,
    MetaGenerator,
    PersistentGenerator,
    ResetGenerator,
    SampleSpec,
    Synthesizer,
)
from dfkd_lightning.synthesis.terms import (
    TERMS,
    LossTerm,
    NetOutput,
    StepContext,
    build_objective,
)

SMALL_SIZES = ["--model.init_args.g_steps", "3", "--trainer.limit_val_batches", "0"]


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["dfkd"])
    monkeypatch.chdir(tmp_path)


def tiny_run(method: str, teacher: Path, *overrides: str) -> DFKDCLI:
    return tiny_fake_run(method, teacher, *SMALL_SIZES, *overrides)


def build_method(teacher: Path, **options) -> tuple[DataFreeDistillation, ClassificationDataModule]:
    """A digits-shaped data-free method built in Python (default: DeepInversion's parts)."""
    data = ClassificationDataModule(
        "fake", channels=1, train_source="steps", steps_per_epoch=4, batch_size=8
    )
    settings = small_method_options(
        teacher,
        data,
        synthesizer=LearnablePixels(),
        synthesis_loss={"bn": 1.0, "oh": 1.0},
        optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
    )
    settings.update(options)
    return DataFreeDistillation(**settings), data


def fit(model: DataFreeDistillation, data, tmp_path: Path, **trainer_options) -> None:
    options = dict(limit_val_batches=0)
    options.update(trainer_options)
    quick_trainer(tmp_path, 1, **options).fit(model, datamodule=data)


# --------------------------------------------------------------------------- batches
def test_synthetic_batch_selects_concatenates_and_picks_without_losing_targets() -> None:
    batch = SyntheticBatch(torch.arange(4.0)[:, None], torch.tensor([0, 1, 2, 3]))
    batch = batch.with_extras(source=torch.tensor([9, 8, 7, 6]))
    picked = batch.select(torch.tensor([True, False, True, False]))
    assert picked.targets.tolist() == [0, 2] and picked.extras["source"].tolist() == [9, 7]
    both = SyntheticBatch.cat([picked, SyntheticBatch(torch.zeros(1, 1))])
    assert both.targets.tolist() == [0, 2, NO_TARGET] and "source" not in both.extras
    other = SyntheticBatch(torch.ones(4, 1), torch.zeros(4, dtype=torch.long), batch.extras)
    assert batch.where(torch.tensor(False), other).samples.sum() == 4
    assert batch.where(torch.tensor(True), other).targets.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="targets"):
        SyntheticBatch(torch.zeros(3, 1), torch.zeros(2, dtype=torch.long))


# --------------------------------------------------------------------------- synthesizers
SPEC = SampleSpec(shape=(1, 8, 8), num_classes=3, batch_size=16, steps_per_round=25)


def _toy_loss(batch: SyntheticBatch) -> torch.Tensor:
    """Pull every pixel towards 0.3 (what any synthesizer should manage)."""
    return (batch.samples - 0.3).pow(2).mean()


@pytest.mark.parametrize(
    "make",
    [LearnablePixels, PersistentGenerator, ResetGenerator, MetaGenerator, ConditionalGenerator],
    ids=lambda make: make.__name__,
)
def test_a_synthesis_round_lowers_the_synthesizers_own_objective(make: Callable) -> None:
    torch.manual_seed(0)
    synthesizer: Synthesizer = make()
    synthesizer.bind(SPEC)
    optimizer = synthesizer.configure_optimizers()[0]
    synthesizer.begin_round(epoch=0)
    first = _toy_loss(synthesizer.render(16)).item()
    for _ in range(SPEC.steps_per_round):
        loss = _toy_loss(synthesizer.render(16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        synthesizer.after_step()
    assert _toy_loss(synthesizer.render(16)).item() < 0.5 * first
    batch = synthesizer.render(16)
    assert batch.samples.shape == (16, 1, 8, 8)
    if isinstance(synthesizer, LearnablePixels | ResetGenerator | MetaGenerator):
        assert batch.targets is not None and int(batch.targets.max()) < 3  # drawn per round
    sampled = synthesizer.sample(5) if not synthesizer.pools else synthesizer.sample(16)
    assert not sampled.samples.requires_grad


def test_the_meta_generator_moves_at_the_end_of_a_round() -> None:
    torch.manual_seed(0)
    synthesizer = MetaGenerator(reset_l0=False)
    synthesizer.bind(SPEC)
    fast, _meta = synthesizer.configure_optimizers()
    before = [p.detach().clone() for p in synthesizer.generator.parameters()]
    synthesizer.begin_round(epoch=0)
    for _ in range(3):
        loss = _toy_loss(synthesizer.render())
        fast.zero_grad()
        loss.backward()
        fast.step()
        synthesizer.after_step()
    synthesizer.end_round(synthesizer.render().detach())
    after = synthesizer.generator.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    synthesizer.begin_round(epoch=0)  # the next round starts from the moved meta-generator
    for fast_p, meta_p in zip(
        synthesizer.fast_generator.parameters(), synthesizer.generator.parameters(), strict=True
    ):
        torch.testing.assert_close(fast_p, meta_p)


def test_every_shipped_synthesizer_is_listed_and_documented() -> None:
    listed = catalog()
    assert set(listed["synthesizers"]) == set(SYNTHESIZERS)
    assert set(listed["terms"]) == set(TERMS)
    assert set(DATA_FREE_METHODS) <= set(listed["methods"])
    assert all(summary for section in listed.values() for _, summary in section.values())


def test_dfkd_list_prints_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    list_main(["terms"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "terms:" and len(lines) == 1 + len(TERMS)
    main(["list"])
    out = capsys.readouterr().out
    assert "methods:" in out and "LearnablePixels" in out and "cmi" in out


# --------------------------------------------------------------------------- terms
class ExplodingTerm(LossTerm):
    """Fails when computed: shows a term is skipped."""

    def forward(self, ctx: StepContext) -> torch.Tensor:
        raise AssertionError("computed")


def test_objectives_parse_weights_options_aliases_and_user_terms() -> None:
    objective = build_objective(
        {
            "bn": 1.0,
            "adv": {"weight": 0.5, "temperature": 2.0, "after_warmup": True},
            "balance": {"term": "ie", "weight": 3.0, "log_base": 10},
            "mine": {"class_path": "test_core.ExplodingTerm", "weight": 0.0},
        }
    )
    assert objective.weights == {"bn": 1.0, "adv": 0.5, "balance": 3.0, "mine": 0.0}
    assert objective.terms["adv"].temperature == 2.0
    assert objective.terms["balance"].log_base == 10.0
    assert isinstance(objective.terms["mine"], ExplodingTerm)
    assert objective.active(student_trains=False) == {"bn": 1.0, "balance": 3.0}
    assert objective.active() == {"bn": 1.0, "adv": 0.5, "balance": 3.0}
    assert objective.needs(objective.active()).student  # adv reads the student
    assert not objective.needs({"bn": 1.0}).student
    with pytest.raises(ValueError, match="unknown loss term 'nope'.*registered terms"):
        build_objective({"nope": 1.0})
    with pytest.raises(ValueError, match="not a LossTerm"):
        build_objective({"x": {"class_path": "torch.nn.Linear"}})
    with pytest.raises(ValueError, match="adv.*temprature"):
        build_objective({"adv": {"temprature": 2.0}})


def test_a_term_added_in_yaml_alone_is_logged_and_changes_the_images(fake_teacher: Path) -> None:
    """DeepInversion's total-variation prior added to CMI by one override."""

    def pooled(*extra: str) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(0)
        cli = tiny_run("cmi", fake_teacher, "--model.init_args.pool_storage", "float32", *extra)
        return cli.model.pool.images(), dict(cli.trainer.callback_metrics)

    plain, plain_metrics = pooled()
    smooth, smooth_metrics = pooled("--model.init_args.synthesis_loss.tv", "50.0")
    assert "synth/tv" in smooth_metrics and "synth/tv" not in plain_metrics
    assert plain.shape == smooth.shape
    assert not torch.allclose(plain, smooth)
    tv = lambda x: (x[..., 1:, :] - x[..., :-1, :]).abs().mean()  # noqa: E731
    assert tv(smooth) < tv(plain)


# --------------------------------------------------------------------------- the loop
class RoundSpy:
    """Records every synthesis step's loss and batch of a method."""

    def __init__(self, model: DataFreeDistillation) -> None:
        self.records: list[tuple[float, SyntheticBatch]] = []
        original = model.synthesis_context

        def spy(batch, weights):
            loss, values, ctx = original(batch, weights)
            self.records.append((float(loss.detach()), batch.detach()))
            return loss, values, ctx

        model.synthesis_context = spy


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_pool_keeps_the_rounds_best_or_last_batch_with_its_targets(
    keep: str, fake_teacher: Path, tmp_path: Path
) -> None:
    model, data = build_method(fake_teacher, keep=keep, pool_storage="float32", kd_steps=4)
    spy = RoundSpy(model)
    fit(model, data, tmp_path)  # 4 paced steps: one round of 3 steps
    assert len(spy.records) == 3
    losses = [loss for loss, _ in spy.records]
    index = losses.index(min(losses)) if keep == "best" else 2
    expected = spy.records[index][1]
    torch.testing.assert_close(model.pool.images(), expected.samples.clamp(0, 1))
    assert torch.equal(model.pool.targets(), expected.targets)  # the round's drawn targets
    sampled = model.pool.sample_batch(32)
    for image, target in zip(sampled.samples, sampled.targets, strict=True):
        row = (model.pool.images() - image).flatten(1).abs().sum(1).argmin()
        assert model.pool.targets()[row] == target


def test_cmis_memory_bank_fills_with_each_rounds_features(fake_teacher: Path) -> None:
    cli = tiny_run("cmi", fake_teacher)
    bank = cli.model.synthesis_objective.terms["cr"].memory_bank
    assert len(bank) == 2 * 8  # 2 rounds of 8 images
    assert bank.dim == 2 * sum(
        m.num_features for m in cli.model.teacher.modules() if isinstance(m, nn.BatchNorm2d)
    )


def test_bn_statistics_are_recorded_during_synthesis_only(fake_teacher: Path, tmp_path) -> None:
    model, data = build_method(fake_teacher)
    seen: list[bool] = []

    class Probe(SampleCallback):
        def on_train_batch_end(self, trainer, module, *args) -> None:
            recorder = module.bn_recorder
            seen.append(all(not hook.enabled for hook in recorder.hooks))
            before = recorder.hooks[0].batch_mean
            module.teacher(torch.rand(2, 1, 32, 32))  # a forward outside synthesis
            seen.append(recorder.hooks[0].batch_mean is before)

    fit(model, data, tmp_path, callbacks=[Probe()])
    assert seen and all(seen)


class Recorder(SampleCallback):
    """Keeps the size of every batch it sees; optionally filters or duplicates it."""

    def __init__(self, action: str = "none") -> None:
        self.sizes: list[int] = []
        self.action = action

    def on_samples_synthesized(self, trainer, module, batch: SyntheticBatch):
        self.sizes.append(len(batch))
        assert not batch.samples.requires_grad and not torch.is_grad_enabled()
        if self.action == "filter":
            return batch.select(slice(0, len(batch) // 2))
        if self.action == "add":
            return SyntheticBatch.cat([batch, batch])
        return None


def test_callbacks_see_a_generator_methods_and_a_pool_methods_samples(
    fake_teacher: Path, tmp_path: Path
) -> None:
    halve, after = Recorder("filter"), Recorder()
    model, data = build_method(
        fake_teacher,
        synthesizer=PersistentGenerator(nz=16, ngf=8),
        synthesis_loss={"adv": {"term": "adv_l1"}},
        student_loss={"l1": 1.0},
    )
    fit(model, data, tmp_path, callbacks=[halve, after])
    assert halve.sizes == [8] * 4  # every student step's fresh batch
    assert after.sizes == [4] * 4  # the next callback sees the filtered batch

    double = Recorder("add")
    model, data = build_method(fake_teacher)
    fit(model, data, tmp_path, callbacks=[double])
    assert double.sizes == [8, 8]  # one pooled batch per round
    assert len(model.pool) == 2 * 16


class FrozenDecoder(Synthesizer):
    """A stand-in for a pretrained, frozen synthesizer (e.g. a diffusion pipeline)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen_pretrained = True
        self.decoder = nn.Conv2d(1, 1, 3, padding=1).requires_grad_(False)
        self.moved_to: list[torch.device] = []

    def to(self, *args, **kwargs):  # type: ignore[override]
        self.moved_to.append(torch.device(args[0] if args else kwargs["device"]))
        return super().to(*args, **kwargs)

    def render(self, n: int | None = None) -> SyntheticBatch:
        spec = self.bound_spec()
        noise = torch.rand(n or spec.batch_size, *spec.shape, device=self.device)
        return SyntheticBatch(self.decoder(noise).sigmoid(), torch.zeros(len(noise)).long())


def test_a_frozen_pretrained_synthesizer_stays_out_of_checkpoints_ddp_and_optimizers(
    fake_teacher: Path, tmp_path: Path
) -> None:
    model, data = build_method(fake_teacher, synthesizer=FrozenDecoder())
    assert not any(key.startswith("synthesizer") for key in model.state_dict())
    assert all(name.split(".")[0] != "synthesizer" for name, _ in model.named_modules())
    fit(model, data, tmp_path)
    assert model.synthesizer.moved_to == [torch.device("cpu")]  # by setup
    assert len(model.trainer.optimizers) == 1  # the student's only
    assert len(model.pool) == 16  # 2 rounds, rendered without optimisation


# --------------------------------------------------------------------------- old runs
def test_a_checkpoint_from_the_earlier_layout_stops_with_a_message(
    fake_teacher: Path, tmp_path: Path
) -> None:
    model, _ = build_method(fake_teacher)
    old = {"datafree_ranks": [{"pool": {}, "rng": {}, "images_synthesized": 0}]}
    with pytest.raises(CheckpointFormatError, match="predates.*Start the run again"):
        model.on_load_checkpoint(old)
    with pytest.raises(CheckpointFormatError, match="predates"):
        model.on_load_checkpoint({"datafree_regression": {"rng": {}}})


def test_a_config_from_the_earlier_layout_stops_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old_cmi.yaml"
    old.write_text(
        "model:\n  class_path: dfkd_lightning.methods.CMI\n"
        "  init_args:\n    cr: 0.8\n    nz: 256\n    bn_momentum: 0.9\n"
    )
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", str(old)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "predates" in err
    assert "cr (" in err and "synthesis_loss" in err and "nz (" in err and "synthesizer" in err
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                str(DIGITS_EXPERIMENTS / "dfad.yaml"),
                "--model.init_args.lr_g",
                "0.1",
            ]
        )
    assert "lr_g (the command line) -> synthesizer.init_args" in capsys.readouterr().err


# --------------------------------------------------------------------------- term values
def _context(targets: torch.Tensor | None = None, features: bool = False) -> StepContext:
    torch.manual_seed(0)
    teacher = torch.randn(6, 5)
    student = torch.randn(6, 5)
    samples = torch.rand(6, 1, 8, 8)
    outputs = NetOutput(teacher, torch.randn(6, 7) if features else None)
    module = SimpleNamespace(normalize=lambda x: (x - 0.5) / 0.25)
    return StepContext(
        SyntheticBatch(samples, targets), samples, outputs, NetOutput(student), "x", module
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"oh": 1.0}, lambda c: losses.one_hot_loss(c.teacher.logits, c.targets)),
        ({"adv": 1.0}, lambda c: losses.adversarial_kl_loss(c.student.logits, c.teacher.logits)),
        (
            {"adv": {"agreeing_only": False, "temperature": 2.0}},
            lambda c: losses.adversarial_kl_loss(
                c.student.logits, c.teacher.logits, 2.0, agreeing_only=False
            ),
        ),
        ({"adv_l1": 1.0}, lambda c: -(c.student.logits - c.teacher.logits).abs().mean()),
        (
            {"competition": {"temperature": 3.0}},
            lambda c: losses.competition_loss(c.student.logits, c.teacher.logits, 3.0),
        ),
        ({"tv": 1.0}, lambda c: losses.total_variation_loss((c.batch.samples - 0.5) / 0.25, "l2")),
        ({"l2": 1.0}, lambda c: torch.linalg.vector_norm((c.batch.samples - 0.5) / 0.25)),
        ({"act": 1.0}, lambda c: -c.teacher.features.abs().mean()),
        ({"ie": 1.0}, lambda c: losses.information_entropy_loss(c.teacher.logits)),
        ({"kd": {"temperature": 4.0}}, lambda c: kd_loss(c.student.logits, c.teacher.logits, 4)),
        (
            {"kd": {"reduction": "mean"}},
            lambda c: kd_loss(c.student.logits, c.teacher.logits, reduction="mean"),
        ),
        (
            {"adv": {"agreeing_only": False, "reduction": "mean"}},
            lambda c: losses.adversarial_kl_loss(
                c.student.logits, c.teacher.logits, agreeing_only=False, reduction="mean"
            ),
        ),
        ({"l1": 1.0}, lambda c: (c.student.logits - c.teacher.logits).abs().mean()),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else "",
)
def test_each_term_is_its_loss_function(spec: dict, expected: Callable) -> None:
    """Terms are thin: each returns its (hand-checked, tests/test_synthesis_losses.py) loss."""
    ctx = _context(torch.tensor([0, 1, 2, 3, 4, 0]), features=True)
    objective = build_objective(spec)
    [name] = spec
    loss, values = objective(ctx, objective.active())
    torch.testing.assert_close(values[name], expected(ctx))
    torch.testing.assert_close(loss, objective.weights[name] * values[name])


def test_one_hot_uses_the_teachers_argmax_without_targets() -> None:
    ctx = _context(None)
    term = build_objective({"oh": 1.0}).terms["oh"]
    argmax = ctx.teacher.logits.argmax(1)
    torch.testing.assert_close(term(ctx), F.cross_entropy(ctx.teacher.logits, argmax))
