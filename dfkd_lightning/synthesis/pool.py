"""A pool of synthetic images kept as tensors: in device memory or in sharded tensor files.

The peers' pools (Fast-Datafree, CMI) write every synthesized image as a PNG and decode them
again for each student batch. :class:`SyntheticPool` keeps the images as one tensor on the
training device instead (``uint8`` by default, i.e. PNG precision at a quarter of the memory of
``float32``), or, for pools too large for memory, appends them to ``shard_XXXXX.pt`` tensor
files that are memory-mapped back for sampling.
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

__all__ = ["SyntheticPool", "rank_directory", "shard_path"]

Storage = Literal["uint8", "float16", "float32"]

_DTYPES: dict[str, torch.dtype] = {
    "uint8": torch.uint8,
    "float16": torch.float16,
    "float32": torch.float32,
}
_SHARD_RE = re.compile(r"^shard_(\d{5,})\.pt$")
_STATE_VERSION = 1


def rank_directory(root: str | os.PathLike, rank: int) -> Path:
    """The pool directory of distributed rank ``rank`` under ``root``: ``root/rank_00``, ..."""
    return Path(root) / f"rank_{int(rank):02d}"


def shard_path(directory: str | os.PathLike, shard_id: int) -> Path:
    """The file of shard ``shard_id`` in ``directory``: ``shard_00000.pt``, ..."""
    return Path(directory) / f"shard_{int(shard_id):05d}.pt"


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


class SyntheticPool:
    """Synthetic images in [0, 1], sampled uniformly with replacement for student batches.

    Args:
        capacity: keep at most this many images; when full the oldest are replaced first
            (FIFO ring). ``None`` keeps everything.
        storage: element type of the stored images. ``uint8`` quantises ``round(x * 255)``
            (error <= 0.5 / 255, like a PNG), ``float16`` / ``float32`` keep more precision.
        directory: ``None`` keeps the images in memory, on the device of the first batch added
            (see :meth:`to`). Otherwise images are appended to ``directory/shard_XXXXX.pt`` files
            of ``shard_size`` images each; the shard in progress stays in (CPU) memory until full.
            Use :func:`rank_directory` to give every distributed rank its own directory.
        shard_size: images per shard file (disk pools only).
        cache_shards: how many memory-mapped shards :meth:`sample` keeps open (LRU).

    Memory pools hold one tensor whose allocation doubles when it runs out (capped at
    ``capacity``), so :meth:`sample` is a single ``index_select`` on the device.
    Disk pools with a capacity delete shard files once all their images have been dropped.
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
            raise ValueError(f"capacity must be positive or None, got {capacity}")
        if storage not in _DTYPES:
            raise ValueError(f"storage must be one of {sorted(_DTYPES)}, got {storage!r}")
        if shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        if cache_shards <= 0:
            raise ValueError(f"cache_shards must be positive, got {cache_shards}")
        self.capacity = capacity
        self.storage: Storage = storage
        self.dtype = _DTYPES[storage]
        self.directory = Path(directory) if directory is not None else None
        self.shard_size = int(shard_size)
        self.cache_shards = int(cache_shards)
        self._shape: tuple[int, ...] | None = None  # shape of one image
        self._device: torch.device | None = None  # memory: storage device; disk: output device
        # Memory pool: slots [0, _size) of _data are valid; once the ring is full, _pos is the
        # oldest slot (the next one overwritten).
        self._data: torch.Tensor | None = None
        self._size = 0
        self._pos = 0
        # Disk pool: the image sequence is shards[0], shards[1], ..., buffer[:_count]; its first
        # _head images have been dropped (capacity).
        self._shards: list[int] = []
        self._head = 0
        self._next_id = 0  # id of the shard in progress (the buffer)
        self._buffer: torch.Tensor | None = None
        self._count = 0
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
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
    def add(self, images: torch.Tensor) -> None:
        """Append a batch ``(N, C, H, W)`` of images in [0, 1] (stored detached)."""
        if images.ndim < 2:
            raise ValueError(
                f"expected a batch (N, ...) of images, got shape {tuple(images.shape)}"
            )
        shape = tuple(images.shape[1:])
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise ValueError(f"image shape {shape} does not match the pool's {self._shape}")
        if self.capacity is not None and images.shape[0] > self.capacity:
            images = images[-self.capacity :]  # the older ones would be dropped at once
        if images.shape[0] == 0:
            return
        if self._device is None:
            self._device = images.device
        encoded = _encode(images, self.dtype)
        if self.on_disk and self._fresh:
            self._warn_stale_shards()
        self._fresh = False
        if self.on_disk:
            self._add_disk(encoded.cpu())
        else:
            self._add_memory(encoded.to(self._device))

    def _add_memory(self, x: torch.Tensor) -> None:
        cap = self.capacity
        if cap is None or self._size < cap:
            fit = x.shape[0] if cap is None else min(x.shape[0], cap - self._size)
            self._reserve(self._size + fit)
            assert self._data is not None
            self._data[self._size : self._size + fit].copy_(x[:fit])
            self._size += fit
            x = x[fit:]
        n = x.shape[0]
        if n:  # the ring is full: overwrite the oldest, wrapping around
            assert self._data is not None and cap is not None
            first = min(n, cap - self._pos)
            self._data[self._pos : self._pos + first].copy_(x[:first])
            self._data[: n - first].copy_(x[first:])
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
        if self._data is not None and self._size:
            data[: self._size].copy_(self._data[: self._size])
        self._data = data

    def _add_disk(self, x: torch.Tensor) -> None:
        while x.shape[0]:
            if self._buffer is None:
                assert self._shape is not None
                self._buffer = torch.empty((self.shard_size, *self._shape), dtype=self.dtype)
            take = min(x.shape[0], self.shard_size - self._count)
            self._buffer[self._count : self._count + take].copy_(x[:take])
            self._count += take
            x = x[take:]
            if self._count == self.shard_size:
                self._write(self._next_id, self._buffer)
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

    def _write(self, shard_id: int, data: torch.Tensor) -> None:
        """Save one shard atomically (readers holding a mapping of an old file are unaffected)."""
        assert self.directory is not None
        path = shard_path(self.directory, shard_id)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(data, tmp)
        os.replace(tmp, path)

    def _drop_shard(self, shard_id: int) -> None:
        self._cache.pop(shard_id, None)
        if self._checkpointed:
            self._pending_delete.append(shard_id)  # the last checkpoint still names it
        else:
            assert self.directory is not None
            shard_path(self.directory, shard_id).unlink(missing_ok=True)

    def flush(self) -> None:
        """Write the shard in progress (partial) so the directory holds every image.

        The buffer stays in memory and the file is rewritten when the shard is complete.
        No-op for memory pools.
        """
        if self.on_disk and self._count and self._buffer is not None:
            self._write(self._next_id, self._buffer[: self._count].clone())

    # ------------------------------------------------------------------ reading
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
        n = len(self)
        if n == 0:
            raise RuntimeError("cannot sample from an empty SyntheticPool")
        if generator is not None:
            index = torch.randint(n, (batch_size,), generator=generator, device=generator.device)
        else:
            where = None if self.on_disk else self._device
            index = torch.randint(n, (batch_size,), device=where)
        return self._fetch(index, device, chronological=False)

    def images(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All images, oldest first, float32 in [0, 1] (memory pools: on :attr:`device` by
        default; disk pools: on the CPU by default)."""
        if len(self) == 0:
            shape = self._shape or (0,)
            return torch.empty((0, *shape), dtype=torch.float32, device=device)
        if self.on_disk:  # shard-sized chunks: each touches at most two shards
            return torch.cat(list(self.iter_images(self.shard_size, device)))
        return self._fetch(torch.arange(len(self)), device, chronological=True)

    def iter_images(
        self, batch_size: int = 1024, device: torch.device | str | None = None
    ) -> Iterator[torch.Tensor]:
        """All images, oldest first, in float32 chunks of ``batch_size`` (e.g. for FID)."""
        n = len(self)
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            yield self._fetch(index, device, chronological=True)

    def _fetch(
        self, index: torch.Tensor, device: torch.device | str | None, chronological: bool
    ) -> torch.Tensor:
        """Decode the images at logical positions ``index`` (slots, or oldest-first order)."""
        if self.on_disk:
            target = device
            if target is None and not chronological:  # samples go where the images came from
                target = self._device
            stored = self._gather_disk(index.cpu())
        else:
            assert self._data is not None
            target = device if device is not None else self._device
            index = index.to(self._data.device)
            if chronological and self.capacity is not None and self._size == self.capacity:
                index = (index + self._pos) % self._size
            stored = self._data.index_select(0, index)
        if target is not None:
            stored = stored.to(target)
        return _decode(stored)

    def _gather_disk(self, index: torch.Tensor) -> torch.Tensor:
        assert self._shape is not None
        position = index + self._head
        which = torch.div(position, self.shard_size, rounding_mode="floor")
        offset = position - which * self.shard_size
        out = torch.empty((index.shape[0], *self._shape), dtype=self.dtype)
        for k in torch.unique(which).tolist():
            mask = which == k
            source = self._buffer if k == len(self._shards) else self._load(self._shards[k])
            assert source is not None
            out[mask] = source.index_select(0, offset[mask])
        return out

    def _load(self, shard_id: int) -> torch.Tensor:
        """A memory-mapped shard, through a small LRU cache."""
        shard = self._cache.get(shard_id)
        if shard is not None:
            self._cache.move_to_end(shard_id)
            return shard
        assert self.directory is not None
        shard = torch.load(shard_path(self.directory, shard_id), weights_only=True, mmap=True)
        if shard.shape[0] != self.shard_size or shard.dtype != self.dtype:
            raise RuntimeError(
                f"shard {shard_id} has shape {tuple(shard.shape)} and dtype {shard.dtype}, "
                f"expected {self.shard_size} images of {self.dtype}"
            )
        self._cache[shard_id] = shard
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return shard

    # ------------------------------------------------------------------ device
    def to(self, device: torch.device | str) -> SyntheticPool:
        """Move a memory pool's images to ``device`` (disk pools: set the default sample device)."""
        device = torch.device(device)
        self._device = device
        if self._data is not None:
            self._data = self._data.to(device)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (loads with ``torch.load(weights_only=True)``).

        Memory pools: the stored images (CPU) in slot order and the ring position. Disk pools:
        the directory, shard ids and counts and the unflushed buffer; the buffer is also
        flushed to disk and shards dropped before the previous checkpoint are deleted.
        """
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "kind": "disk" if self.on_disk else "memory",
            "storage": self.storage,
            "capacity": self.capacity,
            "image_shape": list(self._shape) if self._shape is not None else None,
        }
        if not self.on_disk:
            data = None
            if self._data is not None:
                data = self._data[: self._size].to("cpu", copy=True)
            state.update(data=data, size=self._size, position=self._pos)
            return state
        assert self.directory is not None
        self.flush()
        for shard_id in self._pending_delete:
            shard_path(self.directory, shard_id).unlink(missing_ok=True)
        self._pending_delete = []
        self._checkpointed = True
        buffer = None
        if self._buffer is not None and self._count:
            buffer = self._buffer[: self._count].clone()
        state.update(
            directory=str(self.directory),
            shard_size=self.shard_size,
            shards=list(self._shards),
            head=self._head,
            next_shard=self._next_id,
            buffer=buffer,
            count=self._count,
        )
        return state

    def load_state_dict(
        self, state: dict[str, Any], device: torch.device | str | None = None
    ) -> None:
        """Restore :meth:`state_dict`'s output.

        Memory pools put the images on ``device``, else the pool's :attr:`device`, else the
        CPU. A pool with the same capacity samples exactly as the saved one did; a smaller
        capacity keeps the newest images. Disk pools read the shards from their own
        ``directory`` (the saved one is informative), adopt the saved ``shard_size`` and
        delete shard files there that the state does not name.
        """
        kind = "disk" if self.on_disk else "memory"
        if state.get("kind") != kind:
            raise ValueError(f"cannot load a {state.get('kind')} pool state into a {kind} pool")
        if state.get("storage") != self.storage:
            raise ValueError(
                f"state stores {state.get('storage')!r} images, this pool {self.storage!r}"
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
            self._data, self._size, self._pos = None, 0, 0
            return
        if position and size != self.capacity:  # different capacity: lay out oldest first
            data = torch.cat([data[position:], data[:position]])
            position = 0
        if self.capacity is not None and size > self.capacity:
            data, size = data[size - self.capacity :], self.capacity
        if self._device is None:
            self._device = torch.device("cpu")
        self._data = data.to(device=self._device, dtype=self.dtype).contiguous()
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
        missing = [s for s in self._shards if not shard_path(self.directory, s).exists()]
        if missing:
            raise FileNotFoundError(
                f"shards {missing} of the saved pool are missing from {self.directory}"
            )
        self._buffer = None
        if self._count:
            assert self._shape is not None
            self._buffer = torch.empty((self.shard_size, *self._shape), dtype=self.dtype)
            self._buffer[: self._count].copy_(state["buffer"])
        keep = {*self._shards, self._next_id}
        for path in self.directory.iterdir():
            match = _SHARD_RE.match(path.name)
            if match and int(match.group(1)) not in keep:
                path.unlink(missing_ok=True)
        if self._device is None:
            self._device = torch.device("cpu")
        self._enforce_disk_capacity()  # in case this pool has a smaller capacity
