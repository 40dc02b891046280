"""Lightning callbacks of the suite."""

from dfkd_lightning.callbacks.time_budget import TimeBudgetCosineLR

__all__ = ["TimeBudgetCosineLR"]
