"""The notebooks run from top to bottom on tiny digits runs (a generator method and a pool
method, with the monitoring and export callbacks); a notebook that stops running fails."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import nbformat
import pytest
from conftest import quick_trainer, small_method_options
from lightning.pytorch.loggers import CSVLogger
from nbclient import NotebookClient

from dfkd_lightning.callbacks import ClassBalance, ExportPool, ImageGrids, SampleQuality
from dfkd_lightning.data import ClassificationDataModule
from dfkd_lightning.methods import DFQ, DeepInversion
from dfkd_lightning.records import StudyRecord
from dfkd_lightning.synthesis.synthesizers import LearnablePixels

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def monitored_runs(digits_bn_teacher_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of DFQ (two seeds) and DeepInversion on digits, logged to CSV."""
    runs = tmp_path_factory.mktemp("runs")
    for name, seed in (("dfq", 0), ("dfq", 1), ("deepinversion", 0)):
        L.seed_everything(seed)
        data = ClassificationDataModule(
            "digits", channels=1, train_source="steps", steps_per_epoch=6, batch_size=16
        )
        options = small_method_options(digits_bn_teacher_ckpt, data)
        if name == "dfq":
            model = DFQ(**{**options, "kd_steps": 3, "g_steps": 1})
        else:
            model = DeepInversion(**options, synthesizer=LearnablePixels())
        callbacks = [
            StudyRecord(),
            SampleQuality(num_samples=64, kid_subset_size=16),
            ClassBalance(num_samples=64),
            ImageGrids(per_class=4),
            ExportPool(max_samples=64),
        ]
        logger = CSVLogger(runs, name=name)
        trainer = quick_trainer(runs, 2, callbacks=callbacks, logger=logger, limit_val_batches=2)
        trainer.fit(model, datamodule=data)
        trainer.test(model, datamodule=data, verbose=False)
    return runs


@pytest.mark.parametrize("name", ["compare_runs", "samples_per_class", "training_monitor"])
def test_notebook_runs_on_tiny_runs(
    name: str, monitored_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DFKD_RUNS", str(monitored_runs))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    if name == "compare_runs":
        assert text.count("DFQ") >= 3 and "DeepInversion" in text  # two runs and their group
        assert "0,1" in text  # the two seeds grouped
    elif name == "samples_per_class":
        assert re.search(
            r"deepinversion/version_0/synthetic imagefolder \(\d+, 1, \d+, \d+\)", text
        )
    else:
        for run in ("deepinversion/version_0", "dfq/version_0", "dfq/version_1"):
            assert re.search(rf"{run}: fid [\d.]+, kid_mean .*class_entropy [\d.]+", text), run
