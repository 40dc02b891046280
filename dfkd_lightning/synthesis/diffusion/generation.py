"""Writing a labelled synthetic set with a diffusion synthesizer: rounds split across DDP
ranks, each round seeded on its own (the same set whatever the number of ranks), finished
rounds kept on disk until the rank's shard is written (an interrupted generation resumes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dfkd_lightning.errors import ConfigError, MissingFileError
from dfkd_lightning.export.images import DTYPES, Storage, to_storage
from dfkd_lightning.export.pool import export_pool
from dfkd_lightning.export.read import read_index
from dfkd_lightning.synthesis.batch import SyntheticBatch

__all__ = ["GenerationPlan", "generate_set", "rank_output"]


@dataclass(frozen=True)
class GenerationPlan:
    """``images_per_class`` images of each of ``num_classes`` classes, class after class, in
    rounds of ``round_size``; round ``r`` is drawn with the seed ``seed * 1000003 + r``."""

    num_classes: int
    images_per_class: int
    round_size: int
    seed: int = 0

    def targets(self) -> torch.Tensor:
        return torch.arange(self.num_classes).repeat_interleave(self.images_per_class)

    def rounds(self) -> list[torch.Tensor]:
        return list(self.targets().split(self.round_size))

    def rank_rounds(self, rank: int, world_size: int) -> list[int]:
        """Round ``r`` belongs to rank ``r mod world_size``."""
        return list(range(rank, len(self.rounds()), world_size))

    def round_seed(self, index: int) -> int:
        return self.seed * 1_000_003 + index


def rank_output(directory: Path, rank: int, world_size: int) -> Path:
    """Where a rank writes its shard: the directory itself alone, ``rank_XX`` under DDP."""
    return directory if world_size == 1 else directory / f"rank_{rank:02d}"


def _finished_rounds(directory: Path, fingerprint: dict[str, Any]) -> set[int] | None:
    """The rounds of the set already in ``directory`` (None when there is none); a set made
    with other settings is an error (it is not overwritten)."""
    try:
        index = read_index(directory)
    except MissingFileError:
        return None
    indexes = index.get("ranks", [index])
    done: set[int] = set()
    for entry in indexes:
        made = (entry.get("source") or {}).get("generation")
        if made is None or made["fingerprint"] != fingerprint:
            raise ConfigError(
                f"{directory} holds a set made with other settings ({entry.get('source')}); "
                "set data.init_args.synthetic_dir to another directory, or delete it to make "
                "the set again"
            )
        done.update(made["rounds"])
    return done


def _round_file(directory: Path, index: int) -> Path:
    """A finished round, beside the set (an export replaces the set's directory whole)."""
    return directory.parent / f".{directory.name}.rounds" / f"round_{index:06d}.pt"


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def generate_set(
    synthesizer: Any,
    plan: GenerationPlan,
    directory: str | os.PathLike,
    rank: int = 0,
    world_size: int = 1,
    label_with: Callable[[torch.Tensor], torch.Tensor] | None = None,
    storage: Storage = "uint8",
    description: dict[str, Any] | None = None,
    progress: bool = True,
    process: Callable[[SyntheticBatch], SyntheticBatch] | None = None,
) -> Path:
    """This rank's share of ``plan`` made by ``synthesizer.generate(targets)`` and written to
    ``directory`` (``rank_XX`` under DDP) as a ``shards`` export labelled with the targets (or
    ``label_with(images)``). ``process`` sees each new round before it is kept and may return
    fewer samples (the method's sample callbacks: filters, monitoring); rounds and sets made
    earlier are not seen again. Returns where this rank's shard is."""
    directory = Path(directory)
    if storage not in DTYPES:
        raise ConfigError(f"set_storage must be one of {list(DTYPES)}, got {storage!r}")
    fingerprint = {"plan": asdict(plan), **(description or {})}
    everything = set(range(len(plan.rounds())))
    mine = plan.rank_rounds(rank, world_size)
    output = rank_output(directory, rank, world_size)
    if _finished_rounds(directory, fingerprint) == everything:
        return output  # the whole set is there (written by any number of ranks)
    if output != directory and _finished_rounds(output, fingerprint) == set(mine):
        return output  # this rank's shard is there; the other ranks finish theirs
    targets = plan.rounds()
    todo = [r for r in mine if not _round_file(directory, r).is_file()]
    bar = tqdm(
        total=sum(len(targets[r]) for r in mine),
        initial=sum(len(targets[r]) for r in mine if r not in todo),
        desc=f"generating (rank {rank}/{world_size})",
        unit="img",
        disable=not progress,
        dynamic_ncols=True,
    )
    for done, index in enumerate(todo, start=len(mine) - len(todo) + 1):
        batch = _generate_round(synthesizer, targets[index], plan.round_seed(index))
        if label_with is not None:
            batch = SyntheticBatch(batch.samples, label_with(batch.samples), batch.extras)
        if process is not None:
            batch = process(batch)
        images = to_storage(batch.samples, DTYPES[storage])
        labels = batch.targets_or_none().cpu()
        _save_atomically({"images": images, "targets": labels}, _round_file(directory, index))
        classes = f"{int(targets[index][0])}-{int(targets[index][-1])}"
        bar.set_postfix(round=f"{done}/{len(mine)}", classes=classes)
        bar.update(len(targets[index]))
    bar.close()
    parts = [torch.load(_round_file(directory, r), weights_only=True) for r in mine]
    if parts:
        export_pool(
            torch.cat([part["images"] for part in parts]),
            output,
            torch.cat([p["targets"] for p in parts]),
            format="shards",
            num_classes=plan.num_classes,
            storage=storage,
            overwrite=True,
            metadata={"generation": {"fingerprint": fingerprint, "rounds": mine}},
        )
    for r in mine:
        _round_file(directory, r).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the last rank to finish removes the empty folder
        _round_file(directory, 0).parent.rmdir()
    return output


def _generate_round(synthesizer: Any, targets: torch.Tensor, seed: int) -> SyntheticBatch:
    with torch.random.fork_rng(devices=_rng_devices(synthesizer.device)):
        torch.manual_seed(seed)
        return synthesizer.generate(targets.to(synthesizer.device))


def _save_atomically(value: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    torch.save(value, partial)
    partial.replace(path)
