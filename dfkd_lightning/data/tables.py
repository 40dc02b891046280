"""Loading regression tables as ``(X, y)`` float arrays: bundled, generated, CSV and OpenML."""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.error import URLError

import numpy as np
from sklearn import datasets as skdatasets

from dfkd_lightning.data.sources import DatasetNotFoundError
from dfkd_lightning.errors import ConfigError

#: Offline tables: scikit-learn's bundled diabetes data and the Friedman benchmark functions.
OFFLINE_TABLES = ("diabetes", "friedman1", "friedman2", "friedman3")
#: Every value of ``RegressionDataModule(dataset=...)``.
TABLES = (*OFFLINE_TABLES, "csv", "openml")
#: OpenML names of the datasets of Zhou & Chiam (2023), Table 1 (the Delve / LIACC
#: versions); any other OpenML name or ``openml_id`` works too.
PAPER_OPENML_NAMES = {
    "compactiv": "cpu_act",
    "cpusmall": "cpu_small",
    "mv": "mv",
    "pole": "pol",
    "puma32h": "puma32H",
}


def check_table_name(name: str) -> None:
    if name not in TABLES:
        raise ConfigError(
            f"unknown regression dataset {name!r}; choose one of {list(TABLES)} "
            "(use dataset: csv with csv_path/target for your own file, or dataset: openml "
            "with openml_name for an OpenML dataset)"
        )


def friedman(name: str, samples: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Friedman #1 (10 inputs, 5 informative), #2 or #3 (4 inputs), generated with ``seed``."""
    make = {
        "friedman1": skdatasets.make_friedman1,
        "friedman2": skdatasets.make_friedman2,
        "friedman3": skdatasets.make_friedman3,
    }[name]
    x, y = make(n_samples=samples, noise=noise, random_state=seed)
    return x, y


def read_csv(path: str | Path, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Numeric feature columns and the ``target`` column of a CSV file with a header row.

    Every column other than ``target`` is an input feature and must be numeric.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(
            f"CSV file {path} not found: set data.csv_path to an existing file "
            "(a header row, numeric columns, the target column named by data.target)"
        )
    if not target:
        raise ConfigError("dataset: csv needs data.target, the name of the target column")
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    if target not in header:
        raise ConfigError(
            f"target column {target!r} is not in {path}; its columns are {header}. "
            "Set data.target to one of them"
        )
    if not rows:
        raise ConfigError(f"{path} has a header but no data rows")
    values = np.empty((len(rows), len(header)), dtype=np.float64)
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(f"{path}, line {line}: {len(row)} fields, header has {len(header)}")
        for column, cell in enumerate(row):
            try:
                values[line - 2, column] = float(cell)
            except ValueError:
                raise ConfigError(
                    f"{path}, line {line}: column {header[column]!r} holds the non-numeric "
                    f"value {cell!r}. Encode it as numbers or remove the column"
                ) from None
    if not np.isfinite(values).all():
        bad = header[int(np.argwhere(~np.isfinite(values))[0, 1])]
        raise ConfigError(f"{path}: column {bad!r} holds NaN or infinite values")
    target_index = header.index(target)
    features = np.delete(values, target_index, axis=1)
    if features.shape[1] == 0:
        raise ConfigError(f"{path} has no feature columns besides the target {target!r}")
    return features, values[:, target_index]


def fetch_openml_table(
    name: str | None, data_id: int | None, target: str | None, data_home: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """An OpenML regression dataset (downloaded once into ``data_home``, cached after)."""
    if name is None and data_id is None:
        raise ConfigError("dataset: openml needs data.openml_name or data.openml_id")
    name = PAPER_OPENML_NAMES.get(name.lower(), name) if name else None
    try:
        bunch = skdatasets.fetch_openml(
            name=name,
            data_id=data_id,
            version="active",
            target_column=target or "default-target",
            data_home=str(data_home),
            as_frame=False,
            parser="liac-arff",
        )
    except (URLError, OSError) as error:
        raise DatasetNotFoundError(
            f"OpenML dataset {name or data_id!r} is not cached in {data_home} and could not be "
            f"downloaded ({error}). Run once with internet access (it is cached there), or "
            "export it to CSV and use dataset: csv"
        ) from error
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.float64).reshape(len(x), -1)
    if y.shape[1] != 1:
        raise ConfigError(f"OpenML dataset {name or data_id!r} has {y.shape[1]} targets; name one")
    return x, y[:, 0]
