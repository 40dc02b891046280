"""Export the synthetic pool a data-free method's checkpoint saved (``dfkd export-pool``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.export.images import Storage, resize_images
from dfkd_lightning.export.labels import LabelSource, choose_labels, teacher_labels
from dfkd_lightning.export.pool import ExportFormat, export_pool
from dfkd_lightning.synthesis.batch import NO_TARGET
from dfkd_lightning.synthesis.pool import SyntheticPool

__all__ = ["export_checkpoint_pool"]


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
