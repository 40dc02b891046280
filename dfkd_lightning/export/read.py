"""Read an exported set back: its ``index.json`` and its images and labels, either format,
one export or the per-rank exports of a DDP run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.export.images import to_float
from dfkd_lightning.export.pool import FORMATS, INDEX_FILE, VERSION

__all__ = ["load_exported", "read_index"]

_RANK_RE = re.compile(r"^rank_(\d+)$")


def _export_directories(directory: Path) -> list[Path]:
    """``[directory]`` for one export; its ``rank_XX`` exports (one per DDP rank) in rank
    order; :class:`MissingFileError` otherwise."""
    if (directory / INDEX_FILE).is_file():
        return [directory]
    ranks: list[tuple[int, Path]] = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = _RANK_RE.match(path.name)
            if match and (path / INDEX_FILE).is_file():
                ranks.append((int(match.group(1)), path))
    if ranks:
        return [path for _, path in sorted(ranks)]
    what = "does not exist" if not directory.exists() else f"has no {INDEX_FILE}"
    raise MissingFileError(
        f"{directory} {what}: it is not a set written by export_pool or the ExportPool "
        "callback. Point it at such a directory (a run's <log dir>/synthetic)"
    )


def _read_one_index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX_FILE
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a readable JSON file ({err}); export again") from err
    if not isinstance(index, dict) or index.get("format") not in FORMATS:
        raise ConfigError(
            f"{path} does not describe an exported set (format must be one of {list(FORMATS)})"
        )
    if int(index.get("version", 1)) > VERSION:
        raise ConfigError(
            f"{path} was written by a newer version of the export (version "
            f"{index.get('version')}); update dfkd_lightning to read it"
        )
    return index


def read_index(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``index.json`` of an export directory. For a directory of per-rank exports
    (``rank_00``, ... written under DDP) a summary: ``format: ranks``, ``ranks`` (their
    indexes), the total ``count`` and the common ``image_shape`` and ``num_classes``."""
    directories = _export_directories(Path(directory))
    indexes = [_read_one_index(d) for d in directories]
    if len(indexes) == 1 and directories[0] == Path(directory):
        return indexes[0]
    first = indexes[0]
    for d, index in zip(directories, indexes, strict=True):
        if index["image_shape"] != first["image_shape"] or (
            index["num_classes"] != first["num_classes"]
        ):
            raise ConfigError(
                f"the per-rank exports under {directory} differ ({d.name}: shape "
                f"{index['image_shape']}, {index['num_classes']} classes vs "
                f"{first['image_shape']}, {first['num_classes']}); export them again together"
            )
    return {
        "format": "ranks",
        "count": sum(int(index["count"]) for index in indexes),
        "image_shape": first["image_shape"],
        "num_classes": first["num_classes"],
        "ranks": [
            {"directory": d.name, **index} for d, index in zip(directories, indexes, strict=True)
        ],
    }


def _open_keeping_mode(path: str) -> Image.Image:
    """A PNG as stored (``L`` stays 1-channel); other modes become RGB."""
    with Image.open(path) as image:
        image.load()
        return image.copy() if image.mode in ("L", "RGB") else image.convert("RGB")


def _read_imagefolder(directory: Path, index: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    dataset = ImageFolder(
        str(directory), transform=PILToTensor(), loader=_open_keeping_mode, allow_empty=True
    )
    expected = index.get("classes")
    if expected is not None and list(dataset.classes) != list(expected):
        raise ConfigError(
            f"{directory} holds the class directories {dataset.classes[:5]}..., its "
            f"{INDEX_FILE} names {expected[:5]}...; the set was changed after export"
        )
    images, labels, positions = [], [], []
    for k, (path, _) in enumerate(dataset.samples):
        image, label = dataset[k]
        images.append(image)
        labels.append(label)
        stem = Path(path).stem
        positions.append(int(stem) if stem.isdigit() else len(positions))
    if len(images) != int(index["count"]):
        raise ConfigError(
            f"{directory} holds {len(images)} images, its {INDEX_FILE} says {index['count']}; "
            "the set was changed after export"
        )
    order = torch.as_tensor(positions).argsort()
    stacked = torch.stack(images)[order]
    return to_float(stacked), torch.as_tensor(labels, dtype=torch.long)[order]


def _read_shards(directory: Path, index: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for entry in index["shards"]:
        for name in (entry["images"], entry["targets"]):
            if not (directory / name).is_file():
                raise MissingFileError(
                    f"{directory / name} is missing (listed in {directory / INDEX_FILE}); "
                    "copy the whole export directory"
                )
        images.append(torch.load(directory / entry["images"], weights_only=True))
        labels.append(torch.load(directory / entry["targets"], weights_only=True))
    return to_float(torch.cat(images)), torch.cat(labels).long()


def load_exported(directory: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """An exported set as ``(images, labels)``: float32 ``[N, C, H, W]`` in [0, 1] and int64,
    in the exported order (either format; per-rank exports are concatenated in rank order)."""
    images, labels = [], []
    for d in _export_directories(Path(directory)):
        index = _read_one_index(d)
        reader = _read_imagefolder if index["format"] == "imagefolder" else _read_shards
        x, y = reader(d, index)
        images.append(x)
        labels.append(y)
    return torch.cat(images), torch.cat(labels)
