"""SyntheticPool: memory and sharded-disk pools of synthetic images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd_lightning.synthesis.batch import NO_TARGET, SyntheticBatch
from dfkd_lightning.synthesis.pool import SyntheticPool, rank_directory, shard_path, targets_path


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
    assert targets_path(tmp_path, 7) == tmp_path / "targets_00007.pt"


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
        "targets_00000.pt",
        "targets_00001.pt",
        "targets_00002.pt",
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
    assert state["count"] == 5 and state["shards"] == [0, 1]
    assert "data" not in state and "buffer" not in state  # the buffer is in shard_00002.pt
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
    assert sorted(p.name for p in directory.iterdir()) == [
        "shard_00003.pt",
        "shard_00004.pt",
        "targets_00003.pt",
        "targets_00004.pt",
    ]
    state = pool.state_dict()  # from now on, deletion waits for the next checkpoint
    pool.add(constant_images(range(23, 31)))
    assert ids(pool.images()) == list(range(21, 31))
    assert shard_path(directory, 3).exists() and shard_path(directory, 4).exists()
    resumed = SyntheticPool(capacity=10, storage="float32", directory=directory, shard_size=4)
    resumed.load_state_dict(state)  # resuming from the latest checkpoint still works
    assert ids(resumed.images()) == list(range(13, 23))
    pool.state_dict()
    assert not shard_path(directory, 3).exists() and not shard_path(directory, 4).exists()
    assert not targets_path(directory, 3).exists() and not targets_path(directory, 4).exists()


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


# ---------------------------------------------------------------------- targets


def labels(values: range | list[int]) -> torch.Tensor:
    """The target stored with image ``v`` of :func:`constant_images`: ``3 v + 1``."""
    return torch.as_tensor([3 * v + 1 for v in values], dtype=torch.long)


def assert_aligned(images: torch.Tensor, targets: torch.Tensor) -> None:
    """Every target is the one added with its image (see :func:`labels`)."""
    assert targets.dtype == torch.long and targets.shape == (images.shape[0],)
    assert targets.tolist() == labels(ids(images)).tolist()


def no_tensors(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return False
    if isinstance(value, dict):
        return all(no_tensors(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(no_tensors(v) for v in value)
    return True


def fill(pool: SyntheticPool, stop: int, step: int, start: int = 0) -> None:
    """Add images ``start..stop-1`` with their :func:`labels` in batches of ``step``."""
    for first in range(start, stop, step):
        values = range(first, min(first + step, stop))
        pool.add(constant_images(values), labels(values))


def make_pool(kind: str, tmp_path: Path, **kwargs: object) -> SyntheticPool:
    if kind == "disk":
        kwargs = {"directory": tmp_path / "pool", "shard_size": 4, **kwargs}
    return SyntheticPool(storage="float32", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("capacity", [None, 10])
def test_targets_follow_images(kind: str, capacity: int | None, tmp_path: Path) -> None:
    pool = make_pool(kind, tmp_path, capacity=capacity, cache_shards=1)
    fill(pool, 23, 3)  # wraps the ring / drops shards when capacity is set
    kept = list(range(23)) if capacity is None else list(range(13, 23))
    assert ids(pool.images()) == kept
    assert pool.targets().tolist() == labels(kept).tolist()
    assert pool.targets().device == torch.device("cpu")
    batch = pool.sample_batch(300, generator=generator(0))
    assert isinstance(batch, SyntheticBatch) and len(batch) == 300
    assert_aligned(batch.samples, batch.targets)
    assert set(ids(batch.samples)) == set(kept)
    pool.add(constant_images([100, 101]))  # no targets: NO_TARGET
    assert pool.targets()[-2:].tolist() == [NO_TARGET, NO_TARGET]
    assert pool.targets()[:-2].tolist() == labels(ids(pool.images())[:-2]).tolist()


def test_disk_targets_files(tmp_path: Path) -> None:
    pool = SyntheticPool(storage="float32", directory=tmp_path, shard_size=4)
    fill(pool, 10, 10)
    assert torch.load(targets_path(tmp_path, 1), weights_only=True).tolist() == [
        13,
        16,
        19,
        22,
    ]
    assert not targets_path(tmp_path, 2).exists()  # 8, 9 buffered
    pool.flush()
    assert torch.load(targets_path(tmp_path, 2), weights_only=True).tolist() == [25, 28]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_sample_batch_draws_like_sample(kind: str, tmp_path: Path) -> None:
    pool = make_pool(kind, tmp_path, capacity=9)
    fill(pool, 14, 5)
    batch = pool.sample_batch(64, generator=generator(7))
    assert torch.equal(batch.samples, pool.sample(64, generator=generator(7)))
    assert_aligned(batch.samples, batch.targets)
    assert batch.extras == {}
    torch.manual_seed(3)  # the global RNG draws alike too
    a = pool.sample_batch(32, device="cpu")
    torch.manual_seed(3)
    assert torch.equal(a.samples, pool.sample(32, device="cpu"))


def test_sample_batch_empty_pool_raises() -> None:
    with pytest.raises(RuntimeError):
        SyntheticPool().sample_batch(1)
    assert SyntheticPool().targets().shape == (0,)


def test_add_batch_and_validation() -> None:
    pool = SyntheticPool(storage="float32")
    pool.add_batch(
        SyntheticBatch(constant_images([1, 2]), labels([1, 2]), {"z": torch.zeros(2, 5)})
    )
    pool.add_batch(SyntheticBatch(constant_images([3])))
    assert ids(pool.images()) == [1, 2, 3]
    assert pool.targets().tolist() == [4, 7, NO_TARGET]
    pool.add(constant_images([4]), torch.tensor([13], dtype=torch.int32))  # cast to int64
    assert pool.targets().dtype == torch.long and pool.targets()[-1].item() == 13
    with pytest.raises(ValueError):
        pool.add(constant_images([5, 6]), labels([5]))
    with pytest.raises(TypeError):
        pool.add(constant_images([5]), torch.tensor([1.0]))
    assert len(pool) == 4


def test_add_more_than_capacity_keeps_newest_targets() -> None:
    pool = SyntheticPool(capacity=4, storage="float32")
    pool.add(constant_images(range(7)), labels(range(7)))
    assert ids(pool.images()) == [3, 4, 5, 6]
    assert pool.targets().tolist() == labels(range(3, 7)).tolist()


@pytest.mark.parametrize("capacity", [None, 12])
def test_memory_state_roundtrip_targets(capacity: int | None, tmp_path: Path) -> None:
    pool = SyntheticPool(capacity=capacity, storage="float32")
    fill(pool, 30, 7)
    state = roundtrip(pool.state_dict(), tmp_path)
    assert state["version"] == 2
    assert state["targets"].dtype == torch.long and state["targets"].shape == (len(pool),)
    restored = SyntheticPool(capacity=capacity, storage="float32")
    restored.load_state_dict(state, device="cpu")
    assert torch.equal(restored.targets(), pool.targets())
    a = restored.sample_batch(100, generator=generator(3))
    b = pool.sample_batch(100, generator=generator(3))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.targets, b.targets)
    fill(restored, 35, 5, start=30)  # goes on aligned after the ring position
    assert_aligned(restored.images(), restored.targets())
    small = SyntheticPool(capacity=5, storage="float32")  # newest kept, still aligned
    small.load_state_dict(state)
    assert ids(small.images()) == list(range(25, 30))
    assert small.targets().tolist() == labels(range(25, 30)).tolist()


def test_disk_state_roundtrip_targets(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    pool = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    fill(pool, 21, 4)  # 2 shards + 5 buffered
    state = pool.state_dict()
    assert state["version"] == 2 and state["count"] == 5 and state["next_shard"] == 2
    assert no_tensors(state)  # tiny: no images through all_gather_object
    state = roundtrip(state, tmp_path)
    fill(pool, 35, 7, start=21)  # completes shard 2, writes shard 3 after the checkpoint
    pool.flush()
    assert targets_path(directory, 3).exists()
    restored = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    restored.load_state_dict(state)
    assert len(restored) == 21
    assert ids(restored.images()) == list(range(21))  # incl. the partial shard's 16..20
    assert restored.targets().tolist() == labels(range(21)).tolist()
    assert not shard_path(directory, 3).exists() and not targets_path(directory, 3).exists()
    batch = restored.sample_batch(200, generator=generator(1))
    assert_aligned(batch.samples, batch.targets)
    assert set(ids(batch.samples)) == set(range(21))
    fill(restored, 40, 6, start=21)
    assert ids(restored.images()) == list(range(40))
    assert restored.targets().tolist() == labels(range(40)).tolist()
    again = SyntheticPool(storage="float32", directory=directory, shard_size=8)
    again.load_state_dict(restored.state_dict())
    assert ids(again.images()) == list(range(40))
    assert again.targets().tolist() == labels(range(40)).tolist()


def test_disk_state_missing_partial_shard(tmp_path: Path) -> None:
    pool = SyntheticPool(directory=tmp_path, shard_size=4)
    pool.add(torch.rand(6, 1, 2, 2))
    state = pool.state_dict()
    shard_path(tmp_path, 1).unlink()  # the flushed buffer
    with pytest.raises(FileNotFoundError):
        SyntheticPool(directory=tmp_path, shard_size=4).load_state_dict(state)


def test_version1_memory_state_loads() -> None:
    data = torch.cat([constant_images(range(8, 11)), constant_images(range(3, 8))])
    state = {  # the previous release's format: ring of 8 wrapped at slot 3, no targets
        "version": 1,
        "kind": "memory",
        "storage": "float32",
        "capacity": 8,
        "image_shape": [3, 4, 4],
        "data": data,
        "size": 8,
        "position": 3,
    }
    pool = SyntheticPool(capacity=8, storage="float32")
    pool.load_state_dict(state)
    assert ids(pool.images()) == list(range(3, 11))
    assert pool.targets().tolist() == [NO_TARGET] * 8
    assert pool.sample_batch(16, generator=generator(0)).targets.tolist() == [NO_TARGET] * 16
    fill(pool, 13, 2, start=11)
    assert ids(pool.images()) == list(range(5, 13))
    assert pool.targets().tolist() == [NO_TARGET] * 6 + labels([11, 12]).tolist()


def test_version1_disk_state_loads(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    directory.mkdir()
    for shard in range(2):  # the previous release's shards: no targets files
        torch.save(constant_images(range(4 * shard, 4 * shard + 4)), shard_path(directory, shard))
    torch.save(constant_images([8, 9]), shard_path(directory, 2))  # flushed buffer
    state = {
        "version": 1,
        "kind": "disk",
        "storage": "float32",
        "capacity": None,
        "image_shape": [3, 4, 4],
        "directory": str(directory),
        "shard_size": 4,
        "shards": [0, 1],
        "head": 0,
        "next_shard": 2,
        "buffer": constant_images([8, 9]),
        "count": 2,
    }
    pool = SyntheticPool(storage="float32", directory=directory, shard_size=4)
    pool.load_state_dict(roundtrip(state, tmp_path))
    assert ids(pool.images()) == list(range(10))
    assert pool.targets().tolist() == [NO_TARGET] * 10
    fill(pool, 13, 3, start=10)  # completes shard 2 (with targets) and buffers 12
    expected = [NO_TARGET] * 10 + labels([10, 11, 12]).tolist()
    assert pool.targets().tolist() == expected
    batch = pool.sample_batch(200, generator=generator(4))
    for image, target in zip(ids(batch.samples), batch.targets.tolist(), strict=True):
        assert target == expected[image]
    resumed = SyntheticPool(storage="float32", directory=directory, shard_size=4)
    resumed.load_state_dict(pool.state_dict())  # version 2 over version-1 shards
    assert ids(resumed.images()) == list(range(13))
    assert resumed.targets().tolist() == expected


def test_newer_state_version_rejected() -> None:
    state = SyntheticPool().state_dict()
    state["version"] = 3
    with pytest.raises(ValueError, match="newer"):
        SyntheticPool().load_state_dict(state)


def test_to_moves_targets() -> None:
    pool = SyntheticPool(storage="float32")
    fill(pool, 6, 6)
    state = pool.state_dict()
    pool.to("meta")  # a second device without an accelerator (meta tensors hold no data)
    assert pool._data is not None and pool._data.device.type == "meta"
    assert pool._targets is not None and pool._targets.device.type == "meta"
    batch = pool.sample_batch(4)
    assert batch.samples.device.type == "meta" and batch.targets.device.type == "meta"
    assert pool.targets().device.type == "meta" and pool.targets().shape == (6,)
    restored = SyntheticPool(storage="float32")
    restored.load_state_dict(state, device="meta")
    assert restored._data is not None and restored._data.device.type == "meta"
    assert restored._targets is not None and restored._targets.device.type == "meta"
    assert restored.targets().device.type == "meta" and restored.targets().dtype == torch.long
    on_cpu = SyntheticPool(storage="float32").to("cpu")
    on_cpu.load_state_dict(state)
    assert on_cpu.targets().tolist() == labels(range(6)).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sample_batch_without_host_sync() -> None:
    pool = SyntheticPool(capacity=16)
    pool.add(torch.rand(20, 3, 4, 4, device="cuda"), torch.arange(20, device="cuda"))
    cuda_generator = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batch = pool.sample_batch(8, generator=cuda_generator)
        pool.sample_batch(8)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert batch.targets.device.type == "cuda" and batch.targets.dtype == torch.long
    assert pool.targets().tolist() == list(range(4, 20))
