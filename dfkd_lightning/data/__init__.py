"""Data: image-classification specs, sources and ``ClassificationDataModule``; tabular
``RegressionDataModule``."""

from dfkd_lightning.data.classification import ClassificationDataModule
from dfkd_lightning.data.incremental import ClassIncrementalDataModule
from dfkd_lightning.data.pacing import StepPacer, step_loader
from dfkd_lightning.data.regression import RegressionDataModule
from dfkd_lightning.data.sources import DatasetNotFoundError
from dfkd_lightning.data.specs import (
    DATASETS,
    DatasetSpec,
    available_datasets,
    denormalize,
    get_spec,
    normalize,
)
from dfkd_lightning.data.synthetic_set import SyntheticSetDataModule
from dfkd_lightning.data.tiny_imagenet import TinyImageNet

__all__ = [
    "DATASETS",
    "ClassIncrementalDataModule",
    "ClassificationDataModule",
    "DatasetNotFoundError",
    "DatasetSpec",
    "RegressionDataModule",
    "StepPacer",
    "SyntheticSetDataModule",
    "TinyImageNet",
    "available_datasets",
    "denormalize",
    "get_spec",
    "normalize",
    "step_loader",
]
