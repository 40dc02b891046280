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
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.synthesis.batch import NO_TARGET
from dfkd_lightning.synthesis.pool import SyntheticPool

__all__ = [
    "FORMATS",
    "INDEX_FILE",
    "ExportFormat",
    "LabelSource",
    "Storage",
    "choose_labels",
    "export_checkpoint_pool",
    "export_pool",
    "load_exported",
    "read_index",
    "resize_images",
    "teacher_labels",
]

ExportFormat = Literal["imagefolder", "shards"]
#: Where the exported labels come from: the targets the images were synthesized for
#: (``target``), the teacher's argmax (``teacher``), or the targets when every image has one,
#: else the teacher (``auto``).
LabelSource = Literal["auto", "target", "teacher"]
Storage = Literal["uint8", "float16", "float32"]

#: The formats :func:`export_pool` writes.
FORMATS: tuple[str, ...] = ("imagefolder", "shards")
#: The file describing an export directory.
INDEX_FILE = "index.json"
_VERSION = 1
_DTYPES: dict[str, torch.dtype] = {
    "uint8": torch.uint8,
    "float16": torch.float16,
    "float32": torch.float32,
}
_RANK_RE = re.compile(r"^rank_(\d+)$")
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


# ---------------------------------------------------------------------- helpers
def resize_images(images: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` float images to ``size`` (antialiased when
    shrinking); the same tensor when the size already matches."""
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(images.shape[-2:]) == hw:
        return images
    shrink = hw[0] < images.shape[-2] or hw[1] < images.shape[-1]
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False, antialias=shrink)


def _quantize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] float images -> uint8 ``round(x * 255)`` (uint8 input as it is)."""
    if images.dtype == torch.uint8:
        return images
    return images.float().clamp(0, 1).mul(255).round_().to(torch.uint8)


def _to_storage(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Images (float in [0, 1] or uint8 0..255) in the storage ``dtype``, as a new CPU tensor."""
    images = images.detach().cpu()
    if dtype == torch.uint8:
        return _quantize(images).clone()
    if images.dtype == torch.uint8:
        return images.to(dtype).div_(255)
    return images.to(dtype, copy=True)


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """Stored images -> float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255)
    return images.to(torch.float32)


def _storage_of(source: SyntheticPool | torch.Tensor, storage: Storage | None) -> str:
    if storage is not None:
        if storage not in _DTYPES:
            raise ConfigError(f"storage must be one of {sorted(_DTYPES)}, got {storage!r}")
        return storage
    if isinstance(source, SyntheticPool):
        return source.storage
    names = {dtype: name for name, dtype in _DTYPES.items()}
    return names.get(source.dtype, "float32")


def _chunks(source: SyntheticPool | torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """The source's images in order, ``size`` at a time (pools: float32 in [0, 1])."""
    if isinstance(source, SyntheticPool):
        yield from source.iter_images(size, device="cpu")
        return
    for start in range(0, source.shape[0], size):
        yield source[start : start + size]


def _image_shape(source: SyntheticPool | torch.Tensor) -> tuple[int, ...]:
    if isinstance(source, SyntheticPool):
        if source.image_shape is None:
            return ()
        return tuple(source.image_shape)
    return tuple(source.shape[1:])


@torch.no_grad()
def teacher_labels(
    teacher: nn.Module,
    images: SyntheticPool | torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """The teacher's argmax class of every image (int64, on the CPU), in order.

    ``images``: a pool or ``[N, C, H, W]`` images in [0, 1] (uint8: 0..255).
    ``preprocess`` maps a chunk of [0, 1] images to the teacher's inputs: normalise with the
    dataset's mean/std and resize to the input size (e.g. ``lambda x:
    module.normalize(module.to_input_size(x))``); ``None`` feeds them as they are. The
    teacher runs in eval mode on the device of its parameters, ``batch_size`` at a time.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    parameter = next(iter(teacher.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = teacher.training
    teacher.eval()
    labels = []
    try:
        for chunk in _chunks(images, batch_size):
            inputs = _to_float(chunk).to(device)
            if preprocess is not None:
                inputs = preprocess(inputs)
            labels.append(teacher(inputs).argmax(1).cpu())
    finally:
        teacher.train(was_training)
    if not labels:
        return torch.empty((0,), dtype=torch.long)
    return torch.cat(labels).long()


def _check_targets(targets: torch.Tensor, count: int, num_classes: int | None) -> torch.Tensor:
    """Validated int64 CPU labels, one per image, none unknown."""
    if tuple(targets.shape) != (count,):
        raise ConfigError(
            f"targets have shape {tuple(targets.shape)} but there are {count} images: pass one "
            "class label per image"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ConfigError(f"targets must be integer class labels, got {targets.dtype}")
    targets = targets.detach().to("cpu", torch.long)
    unknown = int((targets == NO_TARGET).sum())
    if unknown:
        raise ConfigError(
            f"{unknown} of the {count} images have no class target (NO_TARGET: they were "
            "synthesized for no class), and an exported set needs a label per image. Label "
            "them with the teacher: export_pool(..., targets=teacher_labels(teacher, images, "
            "preprocess=...)) (the ExportPool callback does this with labels='auto')"
        )
    if count and int(targets.min()) < 0:
        raise ConfigError(f"targets must be >= 0, got {int(targets.min())}")
    if num_classes is not None and count and int(targets.max()) >= num_classes:
        raise ConfigError(
            f"target {int(targets.max())} is out of range for num_classes={num_classes}"
        )
    return targets


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


# ---------------------------------------------------------------------- export
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
    shape = _image_shape(source)
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
    labels = _check_targets(targets, count, num_classes)
    if class_names is not None and num_classes is None:
        num_classes = len(class_names)
    classes = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    if classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {classes}")
    stored = "uint8" if format == "imagefolder" else _storage_of(source, storage)
    source_dtype = _storage_of(source, None)

    directory = Path(directory)
    _prepare_directory(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    index: dict[str, Any] = {
        "format": format,
        "version": _VERSION,
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
            shards = _write_shards(source, labels, staging, _DTYPES[stored], shard_size)
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
    for chunk in _chunks(source, 1024):
        pixels = _quantize(chunk.detach().cpu()).permute(0, 2, 3, 1).numpy()
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
    for chunk in _chunks(source, shard_size):
        shard = len(shards)
        images_name, targets_name = f"images_{shard:05d}.pt", f"targets_{shard:05d}.pt"
        n = chunk.shape[0]
        torch.save(_to_storage(chunk, dtype).contiguous(), root / images_name)
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


# ---------------------------------------------------------------------- reading
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
    if int(index.get("version", 1)) > _VERSION:
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
    return _to_float(stacked), torch.as_tensor(labels, dtype=torch.long)[order]


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
    return _to_float(torch.cat(images)), torch.cat(labels).long()


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


# ---------------------------------------------------------------------- labels, checkpoints
def choose_labels(
    targets: torch.Tensor, source: LabelSource, teacher: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The labels to export by ``source`` (see :data:`LabelSource`): ``targets`` or
    ``teacher()`` (called only when needed)."""
    if source not in ("auto", "target", "teacher"):
        raise ConfigError(f"labels must be auto, target or teacher, got {source!r}")
    if source == "teacher" or (source == "auto" and bool((targets == NO_TARGET).any())):
        return teacher()
    return targets


def _disk_pool_images(state: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (storage dtype) and targets of a disk pool's state, read from its shard
    files without changing them (a :class:`SyntheticPool` would delete unnamed shards)."""
    from dfkd_lightning.synthesis.pool import shard_path, targets_path

    directory, size = Path(state["directory"]), int(state["shard_size"])
    count, head = int(state["count"]), int(state["head"])
    images, labels = [], []
    files = [(int(s), size) for s in state["shards"]]
    buffer = state.get("buffer")  # version 1 states carry the partial shard
    if count and buffer is None:
        files.append((int(state["next_shard"]), count))
    for shard, n in files:
        path = shard_path(directory, shard)
        if not path.is_file():
            raise MissingFileError(
                f"{path} of the checkpoint's pool is missing; export from the run's "
                "pool_directory with its files in place"
            )
        images.append(torch.load(path, weights_only=True, mmap=True)[:n])
        target_file = targets_path(directory, shard)
        if target_file.is_file():
            labels.append(torch.load(target_file, weights_only=True)[:n])
        else:
            labels.append(torch.full((n,), NO_TARGET, dtype=torch.long))
    if count and buffer is not None:
        images.append(buffer[:count])
        labels.append(torch.full((count,), NO_TARGET, dtype=torch.long))
    if not images:
        return torch.empty(0), torch.empty((0,), dtype=torch.long)
    return torch.cat(images)[head:], torch.cat(labels)[head:]


def export_checkpoint_pool(
    checkpoint: str | os.PathLike,
    directory: str | os.PathLike,
    *,
    format: ExportFormat = "imagefolder",
    labels: LabelSource = "auto",
    storage: Storage | None = None,
    shard_size: int = 4096,
    overwrite: bool = False,
) -> list[Path]:
    """Export the pool(s) saved in a data-free method's checkpoint to ``directory`` (one
    ``rank_XX`` export per rank when the run had several); returns the written directories.

    Labels follow ``labels`` (:data:`LabelSource`); the teacher's are computed with the
    checkpoint's own teacher weights, input size and normalisation.
    """
    from dfkd_lightning.nets import build_classifier, load_classifier_weights
    from dfkd_lightning.nets.checkpoint import read_checkpoint

    payload = read_checkpoint(checkpoint)
    ranks = payload.get("datafree_ranks") if isinstance(payload, dict) else None
    if not ranks:
        raise ConfigError(
            f"{checkpoint} holds no synthetic pool: export the checkpoint of a data-free method "
            "run (DeepInversion, CMI, FastDFKD, ...)"
        )
    hparams = dict(payload.get("hyper_parameters") or {})
    num_classes = int(hparams.get("num_classes", 0)) or None
    shape = hparams.get("input_shape") or ()
    mean = torch.tensor(hparams.get("mean", (0.5,)), dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(hparams.get("std", (0.5,)), dtype=torch.float32).view(1, -1, 1, 1)
    teacher_net: nn.Module | None = None

    def teacher_of(images: SyntheticPool | torch.Tensor) -> torch.Tensor:
        nonlocal teacher_net
        if teacher_net is None:
            if not isinstance(hparams.get("teacher"), str) or len(shape) != 3:
                raise ConfigError(
                    f"{checkpoint} does not record its teacher and input shape; pass "
                    "labels='target'"
                )
            teacher_net = build_classifier(hparams["teacher"], num_classes or 0, int(shape[0]))
            load_classifier_weights(teacher_net, checkpoint, prefix="teacher.")
        return teacher_labels(
            teacher_net, images, lambda x: (resize_images(x, shape[-2:]) - mean) / std
        )

    root = Path(directory)
    written = []
    for rank, state in enumerate(ranks):
        pool_state = state["pool"]
        source: SyntheticPool | torch.Tensor
        if pool_state.get("kind") == "disk":
            source, targets = _disk_pool_images(pool_state)
        else:
            source = SyntheticPool(
                capacity=pool_state.get("capacity"), storage=pool_state["storage"]
            )
            source.load_state_dict(pool_state, device="cpu")
            targets = source.targets("cpu")
        count = len(source) if isinstance(source, SyntheticPool) else source.shape[0]
        if count == 0:
            raise ConfigError(f"the pool of rank {rank} in {checkpoint} is empty")
        chosen = choose_labels(targets, labels, lambda s=source: teacher_of(s))
        target_dir = root if len(ranks) == 1 else root / f"rank_{rank:02d}"
        export_pool(
            source,
            target_dir,
            chosen,
            format=format,
            num_classes=num_classes,
            storage=storage,
            shard_size=shard_size,
            overwrite=overwrite,
            metadata={
                "checkpoint": str(Path(checkpoint).resolve()),
                "method": hparams.get("_class_path"),
                "input_shape": list(shape),
                "rank": rank,
                "labels": labels,
            },
        )
        written.append(target_dir)
    return written
