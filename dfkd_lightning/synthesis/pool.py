"""A pool of synthetic images and their class targets kept as tensors: in device memory or in
sharded tensor files.

The peers' pools (Fast-Datafree, CMI) write every synthesized image as a PNG and decode them
again for each student batch. :class:`SyntheticPool` keeps the images as one tensor on the
training device instead (``uint8`` by default, i.e. PNG precision at a quarter of the memory of
``float32``), or, for pools too large for memory, appends them to ``shard_XXXXX.pt`` tensor
files that are memory-mapped back for sampling. Each image keeps the class target it was
synthesized for (int64, :data:`~dfkd_lightning.synthesis.batch.NO_TARGET` when unknown): a
parallel tensor in memory, or a ``targets_XXXXX.pt`` file next to every image shard.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.synthesis.batch import NO_TARGET, SyntheticBatch

__all__ = ["SyntheticPool", "rank_directory", "shard_path", "targets_path"]

Storage = Literal["uint8", "float16", "float32"]

_DTYPES: dict[str, torch.dtype] = {
    "uint8": torch.uint8,
    "float16": torch.float16,
    "float32": torch.float32,
}
_SHARD_RE = re.compile(r"^shard_(\d{5,})\.pt$")
_TARGETS_RE = re.compile(r"^targets_(\d{5,})\.pt$")
# 1: no targets; disk states carry the unflushed buffer. 2: targets; disk states carry only the
# buffer's count (the buffer is read back from its flushed partial shard file).
_STATE_VERSION = 2


def rank_directory(root: str | os.PathLike, rank: int) -> Path:
    """The pool directory of distributed rank ``rank`` under ``root``: ``root/rank_00``, ..."""
    return Path(root) / f"rank_{int(rank):02d}"


def shard_path(directory: str | os.PathLike, shard_id: int) -> Path:
    """The file of shard ``shard_id`` in ``directory``: ``shard_00000.pt``, ..."""
    return Path(directory) / f"shard_{int(shard_id):05d}.pt"


def targets_path(directory: str | os.PathLike, shard_id: int) -> Path:
    """The targets file of shard ``shard_id`` in ``directory``: ``targets_00000.pt``, ..."""
    return Path(directory) / f"targets_{int(shard_id):05d}.pt"


def _encode(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[0, 1] images to the storage dtype (``uint8``: ``round(x * 255)``); detached."""
    images = images.detach()
    if dtype == torch.uint8:
        return images.clamp(0, 1).mul(255).round_().to(torch.uint8)
    return images.to(dtype)


def _decode(stored: torch.Tensor) -> torch.Tensor:
    """Stored images back to float32 in [0, 1] (always a new tensor)."""
    if stored.dtype == torch.uint8:
        return stored.to(torch.float32).div_(255)
    return stored.to(torch.float32, copy=True)


def _no_targets(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` unknown targets (:data:`NO_TARGET`)."""
    return torch.full((n,), NO_TARGET, dtype=torch.long, device=device)


def _write_atomic(value: torch.Tensor, path: Path) -> None:
    """``torch.save`` through a temporary file (readers of a mapped old file are unaffected)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)


class SyntheticPool:
    """Synthetic images in [0, 1] with their class targets, sampled uniformly with replacement
    for student batches.

    Args:
        capacity: keep at most this many images; when full the oldest are replaced first
            (FIFO ring, targets alike). ``None`` keeps everything.
        storage: element type of the stored images. ``uint8`` quantises ``round(x * 255)``
            (error <= 0.5 / 255, like a PNG), ``float16`` / ``float32`` keep more precision.
        directory: ``None`` keeps the images in memory, on the device of the first batch added
            (see :meth:`to`). Otherwise images are appended to ``directory/shard_XXXXX.pt`` files
            of ``shard_size`` images each, their targets to ``directory/targets_XXXXX.pt``; the
            shard in progress stays in (CPU) memory until full. Use :func:`rank_directory` to
            give every distributed rank its own directory.
        shard_size: images per shard file (disk pools only).
        cache_shards: how many memory-mapped shards :meth:`sample` keeps open (LRU).

    Memory pools hold one image tensor and one parallel int64 target tensor whose allocations
    double when they run out (capped at ``capacity``), so :meth:`sample` and
    :meth:`sample_batch` are ``index_select`` calls on the device (no host synchronisation).
    Disk pools with a capacity delete shard files (and their targets files) once all their
    images have been dropped.
    After a :meth:`state_dict` (a checkpoint) the deletion waits until the next
    :meth:`state_dict`, so resuming from the latest checkpoint finds every shard it names;
    resuming from an older checkpoint of a disk pool with a capacity is not supported.
    """

    def __init__(
        self,
        capacity: int | None = None,
        storage: Storage = "uint8",
        directory: str | os.PathLike | None = None,
        shard_size: int = 4096,
        cache_shards: int = 32,
    ) -> None:
        if capacity is not None and capacity <= 0:
            raise ConfigError(f"capacity must be positive or None, got {capacity}")
        if storage not in _DTYPES:
            raise ConfigError(f"storage must be one of {sorted(_DTYPES)}, got {storage!r}")
        if shard_size <= 0:
            raise ConfigError(f"shard_size must be positive, got {shard_size}")
        if cache_shards <= 0:
            raise ConfigError(f"cache_shards must be positive, got {cache_shards}")
        self.capacity = capacity
        self.storage: Storage = storage
        self.dtype = _DTYPES[storage]
        self.directory = Path(directory) if directory is not None else None
        self.shard_size = int(shard_size)
        self.cache_shards = int(cache_shards)
        self._shape: tuple[int, ...] | None = None  # shape of one image
        self._device: torch.device | None = None  # memory: storage device; disk: output device
        # Memory pool: slots [0, _size) of _data (and _targets) are valid; once the ring is full,
        # _pos is the oldest slot (the next one overwritten).
        self._data: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._size = 0
        self._pos = 0
        # Disk pool: the image sequence is shards[0], shards[1], ..., buffer[:_count]; its first
        # _head images have been dropped (capacity).
        self._shards: list[int] = []
        self._head = 0
        self._next_id = 0  # id of the shard in progress (the buffer)
        self._buffer: torch.Tensor | None = None
        self._buffer_targets: torch.Tensor | None = None
        self._count = 0
        # shard id -> (memory-mapped images, targets)
        self._cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._pending_delete: list[int] = []
        self._checkpointed = False
        self._fresh = True  # no image added nor state loaded yet
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ properties
    @property
    def on_disk(self) -> bool:
        """Whether the images live in shard files."""
        return self.directory is not None

    @property
    def device(self) -> torch.device | None:
        """Memory pools: where the images are; disk pools: default device of samples."""
        return self._device

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """Shape of one image, known after the first :meth:`add`."""
        return self._shape

    def __len__(self) -> int:
        if self.on_disk:
            return len(self._shards) * self.shard_size + self._count - self._head
        return self._size

    def __repr__(self) -> str:
        where = f"directory={str(self.directory)!r}" if self.on_disk else f"device={self._device}"
        return (
            f"SyntheticPool(len={len(self)}, capacity={self.capacity}, "
            f"storage={self.storage!r}, {where})"
        )

    # ------------------------------------------------------------------ adding
    def add(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> None:
        """Append a batch ``(N, C, H, W)`` of images in [0, 1] and the ``(N,)`` integer class
        targets they were synthesized for (``None``: :data:`NO_TARGET`); stored detached."""
        if images.ndim < 2:
            raise ValueError(
                f"expected a batch (N, ...) of images, got shape {tuple(images.shape)}"
            )
        if targets is not None:
            if tuple(targets.shape) != (images.shape[0],):
                raise ValueError(
                    f"targets have shape {tuple(targets.shape)} but there are "
                    f"{images.shape[0]} images"
                )
            if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
                raise TypeError(f"targets must be integer class indices, got {targets.dtype}")
        shape = tuple(images.shape[1:])
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(f"image shape {shape} does not match the pool's {self._shape}")
        if self.capacity is not None and images.shape[0] > self.capacity:
            images = images[-self.capacity :]  # the older ones would be dropped at once
            targets = None if targets is None else targets[-self.capacity :]
        if images.shape[0] == 0:
            return
        if self._device is None:
            self._device = images.device
        encoded = _encode(images, self.dtype)
        if self.on_disk and self._fresh:
            self._warn_stale_shards()
        self._fresh = False
        where = torch.device("cpu") if self.on_disk else self._device
        if targets is None:
            labels = _no_targets(encoded.shape[0], where)
        else:
            labels = targets.detach().to(where, torch.long)
        if self.on_disk:
            self._add_disk(encoded.cpu(), labels)
        else:
            self._add_memory(encoded.to(self._device), labels)

    def add_batch(self, batch: SyntheticBatch) -> None:
        """Append a :class:`SyntheticBatch`'s samples and targets (its extras are not kept)."""
        self.add(batch.samples, batch.targets)

    def _add_memory(self, x: torch.Tensor, t: torch.Tensor) -> None:
        cap = self.capacity
        if cap is None or self._size < cap:
            fit = x.shape[0] if cap is None else min(x.shape[0], cap - self._size)
            self._reserve(self._size + fit)
            assert self._data is not None and self._targets is not None
            self._data[self._size : self._size + fit].copy_(x[:fit])
            self._targets[self._size : self._size + fit].copy_(t[:fit])
            self._size += fit
            x, t = x[fit:], t[fit:]
        n = x.shape[0]
        if n:  # the ring is full: overwrite the oldest, wrapping around
            assert self._data is not None and self._targets is not None and cap is not None
            first = min(n, cap - self._pos)
            self._data[self._pos : self._pos + first].copy_(x[:first])
            self._data[: n - first].copy_(x[first:])
            self._targets[self._pos : self._pos + first].copy_(t[:first])
            self._targets[: n - first].copy_(t[first:])
            self._pos = (self._pos + n) % cap

    def _reserve(self, needed: int) -> None:
        """Grow the memory allocation to at least ``needed`` images (amortised doubling)."""
        allocated = 0 if self._data is None else self._data.shape[0]
        if needed <= allocated:
            return
        size = max(needed, 2 * allocated)
        if self.capacity is not None:
            size = min(size, self.capacity)
        assert self._shape is not None
        data = torch.empty((size, *self._shape), dtype=self.dtype, device=self._device)
        targets = torch.empty((size,), dtype=torch.long, device=self._device)
        if self._data is not None and self._targets is not None and self._size:
            data[: self._size].copy_(self._data[: self._size])
            targets[: self._size].copy_(self._targets[: self._size])
        self._data, self._targets = data, targets

    def _add_disk(self, x: torch.Tensor, t: torch.Tensor) -> None:
        while x.shape[0]:
            if self._buffer is None or self._buffer_targets is None:
                assert self._shape is not None
                self._buffer = torch.empty((self.shard_size, *self._shape), dtype=self.dtype)
                self._buffer_targets = _no_targets(self.shard_size)
            take = min(x.shape[0], self.shard_size - self._count)
            self._buffer[self._count : self._count + take].copy_(x[:take])
            self._buffer_targets[self._count : self._count + take].copy_(t[:take])
            self._count += take
            x, t = x[take:], t[take:]
            if self._count == self.shard_size:
                self._write(self._next_id, self._buffer, self._buffer_targets)
                self._shards.append(self._next_id)
                self._next_id += 1
                self._count = 0
        self._enforce_disk_capacity()

    def _enforce_disk_capacity(self) -> None:
        """Drop the oldest images beyond ``capacity``; delete shards left without images."""
        if self.capacity is not None and len(self) > self.capacity:
            self._head += len(self) - self.capacity
            while self._shards and self._head >= self.shard_size:
                self._drop_shard(self._shards.pop(0))
                self._head -= self.shard_size

    def _warn_stale_shards(self) -> None:
        assert self.directory is not None
        stale = [p.name for p in self.directory.iterdir() if _SHARD_RE.match(p.name)]
        if stale:
            warnings.warn(
                f"{self.directory} already holds {len(stale)} shard files that this new pool "
                "overwrites (call load_state_dict first to resume a pool)",
                stacklevel=3,
            )

    def _write(self, shard_id: int, data: torch.Tensor, targets: torch.Tensor) -> None:
        """Save one shard and its targets atomically (readers holding a mapping of an old file
        are unaffected). The targets go first, so they never cover fewer images than the shard."""
        assert self.directory is not None
        _write_atomic(targets, targets_path(self.directory, shard_id))
        _write_atomic(data, shard_path(self.directory, shard_id))

    def _delete(self, shard_id: int) -> None:
        """Remove the files of shard ``shard_id``."""
        assert self.directory is not None
        shard_path(self.directory, shard_id).unlink(missing_ok=True)
        targets_path(self.directory, shard_id).unlink(missing_ok=True)

    def _drop_shard(self, shard_id: int) -> None:
        self._cache.pop(shard_id, None)
        if self._checkpointed:
            self._pending_delete.append(shard_id)  # the last checkpoint still names it
        else:
            self._delete(shard_id)

    def flush(self) -> None:
        """Write the shard in progress (partial) and its targets so the directory holds every
        image.

        The buffer stays in memory and the files are rewritten when the shard is complete.
        No-op for memory pools.
        """
        if self.on_disk and self._count and self._buffer is not None:
            assert self._buffer_targets is not None
            self._write(
                self._next_id,
                self._buffer[: self._count].clone(),
                self._buffer_targets[: self._count].clone(),
            )

    # ------------------------------------------------------------------ reading
    def _draw(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """``batch_size`` uniform indices into the pool (see :meth:`sample`)."""
        n = len(self)
        if n == 0:
            raise RuntimeError("cannot sample from an empty SyntheticPool")
        if generator is not None:
            return torch.randint(n, (batch_size,), generator=generator, device=generator.device)
        where = None if self.on_disk else self._device
        return torch.randint(n, (batch_size,), device=where)

    def sample(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``batch_size`` images drawn uniformly with replacement, float32 in [0, 1].

        Indices are drawn on ``generator.device`` (or, without a generator, from the global RNG
        on the storage device). The result goes to ``device`` (default: :attr:`device`).
        """
        return self._images_at(self._draw(batch_size, generator), device, chronological=False)

    def sample_batch(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> SyntheticBatch:
        """Like :meth:`sample` (the same draws), with the drawn images' int64 targets
        (:data:`NO_TARGET` where unknown; no host synchronisation for memory pools)."""
        index = self._draw(batch_size, generator)
        images, targets = self._fetch(index, device, chronological=False)
        assert images is not None and targets is not None
        return SyntheticBatch(images, targets)

    def images(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All images, oldest first, float32 in [0, 1] (memory pools: on :attr:`device` by
        default; disk pools: on the CPU by default)."""
        if len(self) == 0:
            shape = self._shape or (0,)
            return torch.empty((0, *shape), dtype=torch.float32, device=device)
        if self.on_disk:  # shard-sized chunks: each touches at most two shards
            return torch.cat(list(self.iter_images(self.shard_size, device)))
        return self._images_at(torch.arange(len(self)), device, chronological=True)

    def targets(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All targets, oldest first, int64 (:data:`NO_TARGET` where unknown), on the devices
        :meth:`images` uses."""
        n = len(self)
        if n == 0:
            return torch.empty((0,), dtype=torch.long, device=device)
        step = self.shard_size if self.on_disk else n  # disk: each chunk touches <= 2 shards
        chunks = []
        for start in range(0, n, step):
            index = torch.arange(start, min(start + step, n))
            _, targets = self._fetch(index, device, chronological=True, images=False)
            assert targets is not None
            chunks.append(targets)
        return torch.cat(chunks)

    def iter_images(
        self, batch_size: int = 1024, device: torch.device | str | None = None
    ) -> Iterator[torch.Tensor]:
        """All images, oldest first, in float32 chunks of ``batch_size`` (e.g. for FID)."""
        n = len(self)
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            yield self._images_at(index, device, chronological=True)

    def _images_at(
        self, index: torch.Tensor, device: torch.device | str | None, chronological: bool
    ) -> torch.Tensor:
        """Decoded images only (see :meth:`_fetch`)."""
        images, _ = self._fetch(index, device, chronological, targets=False)
        assert images is not None
        return images

    def _fetch(
        self,
        index: torch.Tensor,
        device: torch.device | str | None,
        chronological: bool,
        images: bool = True,
        targets: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Decoded images and targets at logical positions ``index`` (slots, or oldest-first
        order); ``None`` for what is not asked for."""
        if self.on_disk:
            out_device = device
            if out_device is None and not chronological:  # samples go where images came from
                out_device = self._device
            stored, labels = self._gather_disk(index.cpu(), images, targets)
        else:
            assert self._data is not None and self._targets is not None
            out_device = device if device is not None else self._device
            index = index.to(self._data.device)
            if chronological and self.capacity is not None and self._size == self.capacity:
                index = (index + self._pos) % self._size
            stored = self._data.index_select(0, index) if images else None
            labels = self._targets.index_select(0, index) if targets else None
        if out_device is not None:
            stored = None if stored is None else stored.to(out_device)
            labels = None if labels is None else labels.to(out_device)
        return (None if stored is None else _decode(stored)), labels

    def _gather_disk(
        self, index: torch.Tensor, images: bool, targets: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        assert self._shape is not None
        position = index + self._head
        which = torch.div(position, self.shard_size, rounding_mode="floor")
        offset = position - which * self.shard_size
        out = torch.empty((index.shape[0], *self._shape), dtype=self.dtype) if images else None
        labels = torch.empty((index.shape[0],), dtype=torch.long) if targets else None
        for k in torch.unique(which).tolist():
            mask = which == k
            if k == len(self._shards):
                source, source_targets = self._buffer, self._buffer_targets
            else:
                source, source_targets = self._load(self._shards[k])
            assert source is not None and source_targets is not None
            rows = offset[mask]
            if out is not None:
                out[mask] = source.index_select(0, rows)
            if labels is not None:
                labels[mask] = source_targets.index_select(0, rows)
        return out, labels

    def _load(self, shard_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A memory-mapped shard and its targets, through a small LRU cache."""
        cached = self._cache.get(shard_id)
        if cached is not None:
            self._cache.move_to_end(shard_id)
            return cached
        assert self.directory is not None
        shard = torch.load(shard_path(self.directory, shard_id), weights_only=True, mmap=True)
        if shard.shape[0] != self.shard_size or shard.dtype != self.dtype:
            raise RuntimeError(
                f"shard {shard_id} has shape {tuple(shard.shape)} and dtype {shard.dtype}, "
                f"expected {self.shard_size} images of {self.dtype}"
            )
        cached = (shard, self._read_targets(shard_id, self.shard_size))
        self._cache[shard_id] = cached
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return cached

    def _read_targets(self, shard_id: int, count: int) -> torch.Tensor:
        """The first ``count`` targets of shard ``shard_id`` (all :data:`NO_TARGET` for a
        shard written without a targets file, i.e. by a version-1 pool)."""
        assert self.directory is not None
        path = targets_path(self.directory, shard_id)
        if not path.exists():
            return _no_targets(count)
        targets = torch.load(path, weights_only=True)
        if targets.ndim != 1 or targets.shape[0] < count or targets.dtype != torch.long:
            raise RuntimeError(
                f"targets of shard {shard_id} have shape {tuple(targets.shape)} and dtype "
                f"{targets.dtype}, expected at least {count} int64 targets"
            )
        return targets[:count]

    def _read_partial(self, shard_id: int, count: int) -> torch.Tensor:
        """The first ``count`` images of the (flushed, possibly partial) shard ``shard_id``."""
        assert self.directory is not None
        stored = torch.load(shard_path(self.directory, shard_id), weights_only=True, mmap=True)
        if (
            stored.shape[0] < count
            or tuple(stored.shape[1:]) != self._shape
            or stored.dtype != self.dtype
        ):
            raise RuntimeError(
                f"shard {shard_id} has shape {tuple(stored.shape)} and dtype {stored.dtype}, "
                f"expected at least {count} images of shape {self._shape} and {self.dtype}"
            )
        return stored[:count]

    # ------------------------------------------------------------------ device
    def to(self, device: torch.device | str) -> SyntheticPool:
        """Move a memory pool's images and targets to ``device`` (disk pools: set the default
        sample device)."""
        device = torch.device(device)
        self._device = device
        if self._data is not None:
            self._data = self._data.to(device)
        if self._targets is not None:
            self._targets = self._targets.to(device)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (loads with ``torch.load(weights_only=True)``).

        Memory pools: the stored images and targets (CPU) in slot order and the ring position.
        Disk pools: the directory, shard ids and counts only (no tensors); the buffer is flushed
        to its partial shard file (read back on load) and shards dropped before the previous
        checkpoint are deleted.
        """
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "kind": "disk" if self.on_disk else "memory",
            "storage": self.storage,
            "capacity": self.capacity,
            "image_shape": list(self._shape) if self._shape is not None else None,
        }
        if not self.on_disk:
            data = targets = None
            if self._data is not None and self._targets is not None:
                data = self._data[: self._size].to("cpu", copy=True)
                targets = self._targets[: self._size].to("cpu", copy=True)
            state.update(data=data, targets=targets, size=self._size, position=self._pos)
            return state
        assert self.directory is not None
        self.flush()
        for shard_id in self._pending_delete:
            self._delete(shard_id)
        self._pending_delete = []
        self._checkpointed = True
        state.update(
            directory=str(self.directory),
            shard_size=self.shard_size,
            shards=list(self._shards),
            head=self._head,
            next_shard=self._next_id,
            count=self._count,
        )
        return state

    def load_state_dict(
        self, state: dict[str, Any], device: torch.device | str | None = None
    ) -> None:
        """Restore :meth:`state_dict`'s output (version 2, or version 1: targets unknown).

        Memory pools put the images and targets on ``device``, else the pool's :attr:`device`,
        else the CPU. A pool with the same capacity samples exactly as the saved one did; a
        smaller capacity keeps the newest images. Disk pools read the shards (and the buffer,
        from its partial shard file) from their own ``directory`` (the saved one is
        informative), adopt the saved ``shard_size`` and delete shard files there that the
        state does not name.
        """
        kind = "disk" if self.on_disk else "memory"
        if state.get("kind") != kind:
            raise ConfigError(f"cannot load a {state.get('kind')} pool state into a {kind} pool")
        if state.get("storage") != self.storage:
            raise ConfigError(
                f"state stores {state.get('storage')!r} images, this pool {self.storage!r}"
            )
        version = int(state.get("version", 1))
        if version > _STATE_VERSION:
            raise ConfigError(
                f"pool state version {version} is newer than this release's {_STATE_VERSION}"
            )
        self._fresh = False
        shape = state.get("image_shape")
        self._shape = tuple(shape) if shape is not None else None
        if device is not None:
            self.to(device)
        if self.on_disk:
            self._load_disk_state(state)
        else:
            self._load_memory_state(state)

    def _load_memory_state(self, state: dict[str, Any]) -> None:
        data: torch.Tensor | None = state["data"]
        size, position = int(state["size"]), int(state["position"])
        if data is None or size == 0:
            self._data, self._targets, self._size, self._pos = None, None, 0, 0
            return
        targets: torch.Tensor | None = state.get("targets")  # version 1: none
        if targets is None:
            targets = _no_targets(data.shape[0])
        if position and size != self.capacity:  # different capacity: lay out oldest first
            data = torch.cat([data[position:], data[:position]])
            targets = torch.cat([targets[position:], targets[:position]])
            position = 0
        if self.capacity is not None and size > self.capacity:
            data, targets = data[size - self.capacity :], targets[size - self.capacity :]
            size = self.capacity
        if self._device is None:
            self._device = torch.device("cpu")
        self._data = data.to(device=self._device, dtype=self.dtype).contiguous()
        self._targets = targets.to(device=self._device, dtype=torch.long).contiguous()
        self._size, self._pos = size, position

    def _load_disk_state(self, state: dict[str, Any]) -> None:
        assert self.directory is not None
        self.shard_size = int(state["shard_size"])
        self._shards = [int(s) for s in state["shards"]]
        self._head = int(state["head"])
        self._next_id = int(state["next_shard"])
        self._count = int(state["count"])
        self._cache.clear()
        self._pending_delete = []
        self._checkpointed = True
        buffer: torch.Tensor | None = state.get("buffer")  # version 1 carries the buffer
        needed = list(self._shards)
        if self._count and buffer is None:
            needed.append(self._next_id)  # the partial shard that state_dict flushed
        missing = [s for s in needed if not shard_path(self.directory, s).exists()]
        if missing:
            raise MissingFileError(
                f"shards {missing} of the saved pool are missing from {self.directory}: "
                "resume with the pool_directory the run wrote, with its files in place"
            )
        self._buffer = self._buffer_targets = None
        if self._count:
            assert self._shape is not None
            self._buffer = torch.empty((self.shard_size, *self._shape), dtype=self.dtype)
            self._buffer_targets = _no_targets(self.shard_size)
            if buffer is not None:  # version 1: no targets
                self._buffer[: self._count].copy_(buffer)
            else:
                self._buffer[: self._count].copy_(self._read_partial(self._next_id, self._count))
                self._buffer_targets[: self._count].copy_(
                    self._read_targets(self._next_id, self._count)
                )
        keep = {*self._shards, self._next_id}
        for path in self.directory.iterdir():
            match = _SHARD_RE.match(path.name) or _TARGETS_RE.match(path.name)
            if match and int(match.group(1)) not in keep:
                path.unlink(missing_ok=True)
        if self._device is None:
            self._device = torch.device("cpu")
        self._enforce_disk_capacity()  # in case this pool has a smaller capacity
