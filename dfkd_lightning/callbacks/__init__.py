"""Callbacks: filters, monitoring and export of the synthetic samples."""

from dfkd_lightning.callbacks.base import SampleCallback, run_sample_callbacks

__all__ = ["SampleCallback", "run_sample_callbacks"]
