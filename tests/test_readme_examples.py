"""The README's worked examples (a loss term, a synthesizer, a method) run as written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, quick_trainer, small_method_options

from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.synthesis.terms import TERMS, build_objective


def architecture_examples() -> list[str]:
    """The Python blocks of the README's Architecture section, in order."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def examples() -> Iterator[dict]:
    namespace: dict = {}
    for block in architecture_examples():
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    yield namespace
    TERMS.pop("margin", None)  # registered by the example


def test_the_readme_shows_a_term_a_synthesizer_and_a_method(examples: dict) -> None:
    assert {"LogitMargin", "LowRankPixels", "MarginInversion"} <= examples.keys()


def test_the_example_term_is_found_by_name_and_computes(examples: dict) -> None:
    objective = build_objective({"margin": {"weight": 0.1, "scale": 2.0}})
    term = objective.terms["margin"]
    assert isinstance(term, examples["LogitMargin"]) and term.scale == 2.0


def test_the_example_method_trains_with_the_example_synthesizer(
    examples: dict, fake_teacher: Path, tmp_path: Path
) -> None:
    data = ClassificationDataModule(
        "fake", channels=1, train_source="steps", steps_per_epoch=4, batch_size=8
    )
    model = examples["MarginInversion"](**small_method_options(fake_teacher, data))
    assert isinstance(model.synthesizer, examples["LowRankPixels"])
    quick_trainer(tmp_path, 1, limit_val_batches=0).fit(model, datamodule=data)
    assert len(model.pool) == 16 and model.student_steps == 4
    assert torch.isfinite(model.trainer.callback_metrics["synth/margin"])
