"""Synthetic images on disk for reuse: a torchvision ``ImageFolder`` of PNG files or sharded
tensor files, each directory described by an ``index.json``, and the reader of both.

Formats (``directory`` is what :func:`export_pool` writes):

* ``imagefolder``: ``directory/<class>/<index>.png``, one PNG per image (1 channel: mode
  ``L``, 3 channels: ``RGB``). Class directories are zero-padded numbers (``000``, ``001``,
  ...) so that the lexicographic order torchvision's ``ImageFolder`` gives class indices by is
  the numeric order; every class has its directory, empty or not. File names are the images'
  positions in the exported order, so that order can be restored. PNG holds 8 bits per
  channel: uint8 pools are written exactly, float pools are quantised with
  ``round(x * 255)`` (error <= 0.5 / 255).
* ``shards``: ``directory/images_00000.pt`` (``[N, C, H, W]`` in the pool's storage dtype:
  uint8 values are ``round(x * 255)``, floats are the [0, 1] values themselves) and
  ``directory/targets_00000.pt`` (int64), ... Plain tensors: ``torch.load(path,
  weights_only=True)`` reads them. Exact for every storage dtype.

``index.json`` names the format, the number of images, one image's shape, the stored dtype,
the number of classes and says how to read the files. Every image needs a class label:
samples synthesized without a class target (:data:`~dfkd_lightning.synthesis.batch.NO_TARGET`)
are labelled with :func:`teacher_labels` first. :func:`load_exported` reads either format
back as float images in [0, 1] and their labels, in the exported order.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from dfkd_lightning.errors import ConfigError
from dfkd_lightning.export.images import (
    DTYPES,
    Storage,
    chunks,
    image_shape,
    quantize,
    storage_of,
    to_storage,
)
from dfkd_lightning.export.labels import check_targets
from dfkd_lightning.synthesis.pool import SyntheticPool

__all__ = ["FORMATS", "INDEX_FILE", "VERSION", "ExportFormat", "export_pool"]

ExportFormat = Literal["imagefolder", "shards"]


#: The formats :func:`export_pool` writes.
FORMATS: tuple[str, ...] = ("imagefolder", "shards")


#: The file describing an export directory.
INDEX_FILE = "index.json"


VERSION = 1


_HOW_TO_READ = {
    "imagefolder": (
        "torchvision.datasets.ImageFolder(directory, allow_empty=True) with a loader that keeps "
        "the PNG mode (e.g. lambda p: PIL.Image.open(p).copy(); the default loader converts "
        "1-channel images to RGB) and transforms.PILToTensor(): uint8 images, divide by 255 "
        "for [0, 1]; class directory i is class i. File names give the exported order. Or "
        "dfkd_lightning.export.load_exported(directory)."
    ),
    "shards": (
        "for each entry of 'shards', in order: torch.load(directory / entry['images'], "
        "weights_only=True) ([N, C, H, W] of 'dtype') and torch.load(directory / "
        "entry['targets'], weights_only=True) (int64 labels); concatenate. uint8 values / 255 "
        "are the [0, 1] images, float values are the [0, 1] images as they are. Or "
        "dfkd_lightning.export.load_exported(directory)."
    ),
}


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    """Directory names whose sorted order is the class order."""
    if class_names is None:
        width = max(3, len(str(num_classes - 1)))
        return [f"{k:0{width}d}" for k in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class_names for {num_classes} classes")
    if names != sorted(set(names)):
        raise ConfigError(
            "class_names must be unique and sorted: ImageFolder numbers the class directories "
            "in sorted order, so unsorted names would change the labels (prefix them with a "
            "zero-padded index, e.g. '003_cat')"
        )
    bad = [name for name in names if not name or "/" in name or name in (".", "..")]
    if bad or any(os.sep in name for name in names):
        raise ConfigError(f"class_names must be plain directory names, got {bad[:3]}")
    return names


def _prepare_directory(directory: Path, overwrite: bool) -> None:
    """Refuse a directory that holds other files, or an export unless ``overwrite``."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ConfigError(f"{directory} exists and is not a directory; choose another path")
    if not any(directory.iterdir()):
        return
    if (directory / INDEX_FILE).is_file():
        if overwrite:
            return
        raise ConfigError(
            f"{directory} already holds an exported set; pass overwrite=True to replace it, "
            "or choose another directory"
        )
    raise ConfigError(
        f"{directory} is not empty and holds no exported set ({INDEX_FILE}); choose a new or "
        "empty directory (an export replaces the whole directory)"
    )


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def export_pool(
    source: SyntheticPool | torch.Tensor,
    directory: str | os.PathLike,
    targets: torch.Tensor | None = None,
    *,
    format: ExportFormat = "imagefolder",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    storage: Storage | None = None,
    shard_size: int = 4096,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a pool's images (or ``[N, C, H, W]`` images: float in [0, 1] or uint8) and their
    class labels to ``directory`` in ``format``; returns the directory.

    Args:
        source: a :class:`SyntheticPool` (oldest image first) or an image tensor.
        targets: one label per image; default: the pool's targets. Unknown ones
            (``NO_TARGET``) are an error: pass :func:`teacher_labels` instead.
        num_classes: number of classes (default: largest label + 1; give it so that every
            class gets its directory and the index records the dataset's class count).
        class_names: ``imagefolder`` directory names (sorted, unique); default ``000``, ...
        storage: ``shards`` element type; default the pool's storage (a tensor: its own dtype
            when uint8/float16/float32, else float32). ``imagefolder`` is always uint8 PNG.
        shard_size: images per ``shards`` file.
        overwrite: replace an earlier export in ``directory`` (the whole directory).
        metadata: JSON-able facts recorded in ``index.json`` under ``"source"``.

    The files are written next to ``directory`` and moved into place when complete.
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    if not isinstance(source, SyntheticPool | torch.Tensor):
        raise ConfigError(
            f"export_pool takes a SyntheticPool or an image tensor, got {type(source).__name__}"
        )
    count = len(source) if isinstance(source, SyntheticPool) else int(source.shape[0])
    if count == 0:
        raise ConfigError("there are no images to export (the pool is empty)")
    shape = image_shape(source)
    if format == "imagefolder" and (len(shape) != 3 or shape[0] not in (1, 3)):
        raise ConfigError(
            f"imagefolder exports images of 1 or 3 channels [C, H, W], got shape {list(shape)}; "
            "use format='shards' for other samples"
        )
    if isinstance(source, torch.Tensor) and not (
        source.dtype == torch.uint8 or source.is_floating_point()
    ):
        raise ConfigError(f"images must be float in [0, 1] or uint8, got {source.dtype}")
    if targets is None:
        if not isinstance(source, SyntheticPool):
            raise ConfigError("pass targets: one class label per image")
        targets = source.targets("cpu")
    labels = check_targets(targets, count, num_classes)
    if class_names is not None and num_classes is None:
        num_classes = len(class_names)
    classes = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    if classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {classes}")
    stored = "uint8" if format == "imagefolder" else storage_of(source, storage)
    source_dtype = storage_of(source, None)

    directory = Path(directory)
    _prepare_directory(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    index: dict[str, Any] = {
        "format": format,
        "version": VERSION,
        "count": count,
        "image_shape": list(shape),
        "num_classes": classes,
        "dtype": stored,
        "source_dtype": source_dtype,
        "quantized": stored == "uint8" and source_dtype != "uint8",
    }
    try:
        if format == "imagefolder":
            names = _class_names(classes, class_names)
            _write_imagefolder(source, labels, staging, names)
            index.update(classes=names, values="PNG 8-bit: value / 255 is the [0, 1] image")
        else:
            shards = _write_shards(source, labels, staging, DTYPES[stored], shard_size)
            index.update(
                shards=shards,
                values="value / 255 is the [0, 1] image"
                if stored == "uint8"
                else "the values are the [0, 1] image",
            )
            if class_names is not None:
                index["classes"] = [str(name) for name in class_names]
        if index["quantized"]:
            index["values"] += " (quantised from float with round(x * 255))"
        index["how_to_read"] = _HOW_TO_READ[format]
        if metadata:
            index["source"] = metadata
        _write_json(staging / INDEX_FILE, index)
        _swap_into_place(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _write_imagefolder(
    source: SyntheticPool | torch.Tensor, labels: torch.Tensor, root: Path, names: list[str]
) -> None:
    for name in names:
        (root / name).mkdir()
    width = max(5, len(str(len(labels) - 1)))
    position = 0
    for chunk in chunks(source, 1024):
        pixels = quantize(chunk.detach().cpu()).permute(0, 2, 3, 1).numpy()
        for image in pixels:
            array = np.ascontiguousarray(image[..., 0] if image.shape[-1] == 1 else image)
            label = int(labels[position])
            Image.fromarray(array).save(root / names[label] / f"{position:0{width}d}.png")
            position += 1


def _write_shards(
    source: SyntheticPool | torch.Tensor,
    labels: torch.Tensor,
    root: Path,
    dtype: torch.dtype,
    shard_size: int,
) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    position = 0
    for chunk in chunks(source, shard_size):
        shard = len(shards)
        images_name, targets_name = f"images_{shard:05d}.pt", f"targets_{shard:05d}.pt"
        n = chunk.shape[0]
        torch.save(to_storage(chunk, dtype).contiguous(), root / images_name)
        torch.save(labels[position : position + n].clone(), root / targets_name)
        shards.append({"images": images_name, "targets": targets_name, "count": n})
        position += n
    return shards


def _swap_into_place(staging: Path, directory: Path) -> None:
    """Move the complete ``staging`` directory to ``directory`` (replacing an old export)."""
    old = None
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
