"""Callbacks: filters, monitoring and export of the synthetic samples."""

from dfkd_lightning.callbacks.balance import ClassBalance
from dfkd_lightning.callbacks.base import SampleCallback, run_sample_callbacks
from dfkd_lightning.callbacks.export import ExportPool
from dfkd_lightning.callbacks.filters import (
    ClassQuotaFilter,
    ConfidenceFilter,
    SampleFilter,
    SimilarityFilter,
)
from dfkd_lightning.callbacks.grids import ImageGrids
from dfkd_lightning.callbacks.quality import SampleQuality
from dfkd_lightning.callbacks.variations import DiffusionVariations

__all__ = [
    "ClassBalance",
    "ClassQuotaFilter",
    "ConfidenceFilter",
    "DiffusionVariations",
    "ExportPool",
    "ImageGrids",
    "SampleCallback",
    "SampleFilter",
    "SampleQuality",
    "SimilarityFilter",
    "run_sample_callbacks",
]
