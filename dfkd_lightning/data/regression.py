"""``RegressionDataModule``: standardised tabular regression data with fixed seeded splits."""

from __future__ import annotations

from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dfkd_lightning.data import tables
from dfkd_lightning.data.pacing import step_loader
from dfkd_lightning.errors import ConfigError


class RegressionDataModule(L.LightningDataModule):
    """Train/val/test loaders of ``(x, y)`` float batches, ``x`` of shape ``(N, d)``, ``y``
    of shape ``(N, 1)``.

    ``dataset``: ``diabetes`` (scikit-learn's bundled data), ``friedman1``/``2``/``3``
    (``samples`` points generated with ``seed``, Gaussian ``noise``), ``csv`` (``csv_path``,
    target column ``target``; every other column is a feature) or ``openml``
    (``openml_name`` or ``openml_id``, cached under ``root/openml``; online once).

    Splits are a fixed permutation drawn with ``split_seed``: ``test_fraction`` of the rows
    for test, ``val_fraction`` of the rest for validation. Inputs and target are standardised
    with the mean/std of the training split only; RMSE and R^2 are reported on the
    standardised target (as Zhou & Chiam do). With ``train_source="steps"`` the train loader
    yields ``steps_per_epoch`` step indices for the data-free methods.

    ``__init__`` reads the table (small, in memory), so ``in_features`` is known before the
    CLI builds the model.
    """

    def __init__(
        self,
        dataset: str = "diabetes",
        root: str = "data",
        csv_path: str | None = None,
        target: str | None = None,
        openml_name: str | None = None,
        openml_id: int | None = None,
        samples: int = 5000,
        noise: float = 0.0,
        batch_size: int = 16,
        eval_batch_size: int = 1024,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        train_source: Literal["real", "steps"] = "real",
        steps_per_epoch: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # logged under data by RunRecord
        tables.check_table_name(dataset)
        if not 0.0 < test_fraction < 1.0 or not 0.0 <= val_fraction < 1.0:
            raise ConfigError(
                f"test_fraction must be in (0, 1) and val_fraction in [0, 1), got "
                f"{test_fraction}, {val_fraction}"
            )
        if batch_size < 1 or eval_batch_size < 1 or steps_per_epoch < 1:
            raise ConfigError("batch_size, eval_batch_size and steps_per_epoch must be >= 1")
        if train_source not in ("real", "steps"):
            raise ConfigError(f"train_source must be 'real' or 'steps', got {train_source!r}")
        self.dataset = dataset
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_source, self.steps_per_epoch = train_source, steps_per_epoch
        x, y = self._load_table()
        self.splits = self._split(x, y)
        self.in_features: int = x.shape[1]
        self.out_features: int = 1

    def _load_table(self) -> tuple[np.ndarray, np.ndarray]:
        hp = self.hparams
        if self.dataset == "diabetes":
            return tables.skdatasets.load_diabetes(return_X_y=True)
        if self.dataset.startswith("friedman"):
            return tables.friedman(self.dataset, hp.samples, hp.noise, hp.seed)
        if self.dataset == "csv":
            if not hp.csv_path:
                raise ConfigError("dataset: csv needs data.csv_path")
            return tables.read_csv(hp.csv_path, hp.target)
        return tables.fetch_openml_table(
            hp.openml_name, hp.openml_id, hp.target, f"{hp.root}/openml"
        )

    def _split(self, x: np.ndarray, y: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Seeded test / val / train rows, standardised with the training statistics."""
        hp = self.hparams
        order = np.random.default_rng(hp.split_seed).permutation(len(x))
        n_test = max(1, round(hp.test_fraction * len(x)))
        n_val = round(hp.val_fraction * (len(x) - n_test))
        rows = {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        if len(rows["train"]) < 2:
            raise ConfigError(f"{len(x)} rows leave fewer than 2 for training; lower the fractions")
        train_x, train_y = x[rows["train"]], y[rows["train"]]
        self.x_mean, self.x_std = train_x.mean(0), _safe_std(train_x.std(0))
        self.y_mean, self.y_std = float(train_y.mean()), float(_safe_std(train_y.std()))
        return {
            split: (
                torch.as_tensor((x[index] - self.x_mean) / self.x_std, dtype=torch.float32),
                torch.as_tensor((y[index] - self.y_mean) / self.y_std, dtype=torch.float32)[
                    :, None
                ],
            )
            for split, index in rows.items()
        }

    def split_sizes(self) -> dict[str, int]:
        return {split: len(y) for split, (_, y) in self.splits.items()}

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.seed) if shuffle else None
        return DataLoader(
            TensorDataset(*self.splits[split]),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training rows, or ``steps_per_epoch`` step indices (data-free methods)."""
        if self.train_source == "steps":
            return step_loader(self.steps_per_epoch)
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if len(self.splits["val"][1]) == 0:
            return []
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)


def _safe_std(std: np.ndarray | float) -> np.ndarray | float:
    """Standard deviations with zeros (constant columns) replaced by 1."""
    return np.where(np.asarray(std) > 0, std, 1.0)
