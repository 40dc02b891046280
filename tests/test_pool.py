"""SyntheticPool: memory and sharded-disk pools of synthetic images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd_lightning.synthesis.pool import SyntheticPool, rank_directory, shard_path


def constant_images(values: range | list[int], shape: tuple[int, ...] = (3, 4, 4)) -> torch.Tensor:
    """Image ``i`` is filled with ``values[i] / 255`` (exact in every storage)."""
    values = torch.as_tensor(list(values), dtype=torch.float32) / 255
    return values.view(-1, *([1] * len(shape))).expand(-1, *shape).contiguous()


def ids(images: torch.Tensor) -> list[int]:
    """Recover the constant of each image made by :func:`constant_images`."""
    return torch.round(images.flatten(1)[:, 0] * 255).long().tolist()


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def roundtrip(state: dict, tmp_path: Path) -> dict:
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("storage", ["uint8", "float16", "float32"])
def test_add_sample_shapes_and_dtype(storage: str) -> None:
    pool = SyntheticPool(storage=storage)
    assert len(pool) == 0
    pool.add(torch.rand(5, 3, 8, 8))
    pool.add(torch.rand(7, 3, 8, 8))
    assert len(pool) == 12
    batch = pool.sample(16, generator=generator(0))
    assert batch.shape == (16, 3, 8, 8)
    assert batch.dtype == torch.float32
    assert batch.device == torch.device("cpu")
    assert batch.min() >= 0 and batch.max() <= 1
    assert pool.images().shape == (12, 3, 8, 8)
    assert pool.sample(4, device="cpu").shape == (4, 3, 8, 8)  # global RNG


def test_quantisation_error() -> None:
    images = torch.rand(64, 3, 8, 8)
    uint8 = SyntheticPool(storage="uint8")
    uint8.add(images)
    assert (uint8.images() - images).abs().max() <= 0.5 / 255 + 1e-6
    assert uint8._data is not None and uint8._data.dtype == torch.uint8
    float32 = SyntheticPool(storage="float32")
    float32.add(images)
    assert torch.equal(float32.images(), images)
    float16 = SyntheticPool(storage="float16")
    float16.add(images)
    assert (float16.images() - images).abs().max() <= 1e-3


def test_add_detaches_and_validates() -> None:
    pool = SyntheticPool()
    pool.add(torch.rand(2, 3, 4, 4, requires_grad=True))
    assert not pool.sample(2).requires_grad
    with pytest.raises(ValueError):
        pool.add(torch.rand(2, 3, 5, 5))
    with pytest.raises(RuntimeError):
        SyntheticPool().sample(1)
    with pytest.raises(ValueError):
        SyntheticPool(storage="int8")  # type: ignore[arg-type]


def test_growth_keeps_order() -> None:
    pool = SyntheticPool(storage="float32")
    for start in range(0, 200, 13):
        pool.add(constant_images(range(start, min(start + 13, 200))))
    assert len(pool) == 200
    assert ids(pool.images()) == list(range(200))
    assert pool._data is not None and pool._data.shape[0] < 400  # amortised doubling


@pytest.mark.parametrize("batches", [[3, 7, 4, 11], [25], [10, 10, 5], [1] * 25])
def test_capacity_fifo(batches: list[int]) -> None:
    pool = SyntheticPool(capacity=10)
    start = 0
    for size in batches:
        pool.add(constant_images(range(start, start + size)))
        start += size
        assert len(pool) == min(start, 10)
    assert ids(pool.images()) == list(range(15, 25))  # oldest first, oldest 15 gone
    assert set(ids(pool.sample(500, generator=generator(0)))) == set(range(15, 25))
    assert pool._data is not None and pool._data.shape[0] == 10


def test_sampling_uniform_and_seeded() -> None:
    pool = SyntheticPool()
    pool.add(constant_images(range(10)))
    drawn = ids(pool.sample(20_000, generator=generator(1)))
    counts = torch.bincount(torch.tensor(drawn), minlength=10).float()
    assert (counts - 2000).abs().max() < 200  # ~4.5 sigma
    a = pool.sample(64, generator=generator(5))
    assert torch.equal(a, pool.sample(64, generator=generator(5)))
    assert not torch.equal(a, pool.sample(64, generator=generator(6)))


@pytest.mark.parametrize("capacity", [None, 12])
def test_memory_state_roundtrip(capacity: int | None, tmp_path: Path) -> None:
    pool = SyntheticPool(capacity=capacity, storage="uint8")
    for _ in range(0, 30, 7):  # wraps the ring when capacity is set
        pool.add(torch.rand(7, 3, 6, 6))
    state = roundtrip(pool.state_dict(), tmp_path)
    assert state["data"].device == torch.device("cpu") and state["data"].dtype == torch.uint8
    restored = SyntheticPool(capacity=capacity, storage="uint8")
    restored.load_state_dict(state, device="cpu")
    assert len(restored) == len(pool)
    assert torch.equal(
        restored.sample(100, generator=generator(3)), pool.sample(100, generator=generator(3))
    )
    assert torch.equal(restored.images(), pool.images())
    more = torch.rand(5, 3, 6, 6)  # both go on identically
    pool.add(more)
    restored.add(more)
    assert torch.equal(
        restored.sample(100, generator=generator(4)), pool.sample(100, generator=generator(4))
    )
    assert torch.equal(restored.images(), pool.images())


def test_memory_state_into_smaller_capacity() -> None:
    pool = SyntheticPool(capacity=8, storage="float32")
    pool.add(constant_images(range(13)))  # ring wrapped
    small = SyntheticPool(capacity=5, storage="float32")
    small.load_state_dict(pool.state_dict())
    assert ids(small.images()) == list(range(8, 13))
    small.add(constant_images([100]))
    assert ids(small.images()) == [9, 10, 11, 12, 100]
    with pytest.raises(ValueError):
        SyntheticPool(storage="float16").load_state_dict(pool.state_dict())
    with pytest.raises(ValueError):
        SyntheticPool(storage="float32", directory=None).load_state_dict({"kind": "disk"})


def test_empty_state_roundtrip(tmp_path: Path) -> None:
    restored = SyntheticPool()
    restored.load_state_dict(roundtrip(SyntheticPool().state_dict(), tmp_path))
    assert len(restored) == 0
    restored.add(torch.rand(2, 1, 3, 3))
    assert len(restored) == 2


def test_rank_directory(tmp_path: Path) -> None:
    assert rank_directory(tmp_path, 0) == tmp_path / "rank_00"
    assert rank_directory(str(tmp_path), 3) == tmp_path / "rank_03"
    assert shard_path(tmp_path, 7) == tmp_path / "shard_00007.pt"


def test_disk_pool_shards_and_sampling(tmp_path: Path) -> None:
    directory = rank_directory(tmp_path, 0)
    pool = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    for start in range(0, 28, 7):
        pool.add(constant_images(range(start, start + 7)))
    assert len(pool) == 28
    assert sorted(p.name for p in directory.iterdir()) == [
        "shard_00000.pt",
        "shard_00001.pt",
        "shard_00002.pt",
    ]  # 24 images on disk, 4 buffered
    shard = torch.load(directory / "shard_00001.pt", weights_only=True)
    assert shard.shape == (8, 3, 4, 4) and ids(shard) == list(range(8, 16))
    assert ids(pool.images()) == list(range(28))
    batch = pool.sample(400, generator=generator(0))
    assert batch.shape == (400, 3, 4, 4) and batch.dtype == torch.float32
    assert set(ids(batch)) == set(range(28))  # every shard and the buffer
    pool.flush()
    partial = torch.load(directory / "shard_00003.pt", weights_only=True)
    assert ids(partial) == [24, 25, 26, 27]
    assert ids(torch.cat(list(pool.iter_images(5)))) == list(range(28))


def test_disk_pool_uint8_quantisation(tmp_path: Path) -> None:
    pool = SyntheticPool(directory=tmp_path, shard_size=16)
    images = torch.rand(40, 3, 4, 4)
    pool.add(images)
    assert torch.load(tmp_path / "shard_00000.pt", weights_only=True).dtype == torch.uint8
    assert (pool.images() - images).abs().max() <= 0.5 / 255 + 1e-6


def test_disk_state_roundtrip(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    pool = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    pool.add(constant_images(range(21)))  # 2 shards + 5 buffered
    state = roundtrip(pool.state_dict(), tmp_path)
    assert state["buffer"].shape[0] == 5 and state["shards"] == [0, 1]
    assert "data" not in state
    pool.add(constant_images(range(21, 30)))  # progress after the checkpoint is lost on resume
    restored = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    restored.load_state_dict(state)
    assert len(restored) == 21
    assert ids(restored.images()) == list(range(21))
    assert not (directory / "shard_00003.pt").exists()  # written after the checkpoint: removed
    reference = SyntheticPool(storage="float32", directory=tmp_path / "ref", shard_size=8)
    reference.add(constant_images(range(21)))
    assert torch.equal(
        restored.sample(64, generator=generator(2)), reference.sample(64, generator=generator(2))
    )
    restored.add(constant_images(range(21, 40)))
    assert ids(restored.images()) == list(range(40))
    assert (directory / "shard_00004.pt").exists()


def test_disk_capacity(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    pool = SyntheticPool(capacity=10, storage="float32", directory=directory, shard_size=4)
    for start in range(0, 23, 3):
        pool.add(constant_images(range(start, min(start + 3, 23))))
    assert len(pool) == 10
    assert ids(pool.images()) == list(range(13, 23))
    assert set(ids(pool.sample(300, generator=generator(0)))) == set(range(13, 23))
    # shards 0..2 hold images 0..11 only: deleted; shards 3, 4 (12..19) stay, 20..22 buffered
    assert sorted(p.name for p in directory.iterdir()) == ["shard_00003.pt", "shard_00004.pt"]
    state = pool.state_dict()  # from now on, deletion waits for the next checkpoint
    pool.add(constant_images(range(23, 31)))
    assert ids(pool.images()) == list(range(21, 31))
    assert shard_path(directory, 3).exists() and shard_path(directory, 4).exists()
    resumed = SyntheticPool(capacity=10, storage="float32", directory=directory, shard_size=4)
    resumed.load_state_dict(state)  # resuming from the latest checkpoint still works
    assert ids(resumed.images()) == list(range(13, 23))
    pool.state_dict()
    assert not shard_path(directory, 3).exists() and not shard_path(directory, 4).exists()


def test_disk_missing_shard(tmp_path: Path) -> None:
    pool = SyntheticPool(directory=tmp_path, shard_size=2)
    pool.add(torch.rand(5, 1, 2, 2))
    state = pool.state_dict()
    shard_path(tmp_path, 0).unlink()
    with pytest.raises(FileNotFoundError):
        SyntheticPool(directory=tmp_path, shard_size=2).load_state_dict(state)


def test_new_disk_pool_warns_about_old_shards(tmp_path: Path) -> None:
    SyntheticPool(directory=tmp_path, shard_size=2).add(torch.rand(4, 1, 2, 2))
    with pytest.warns(UserWarning, match="already holds 2 shard files"):
        SyntheticPool(directory=tmp_path, shard_size=2).add(torch.rand(1, 1, 2, 2))
