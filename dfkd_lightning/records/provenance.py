"""Provenance of a run: the suite's version and git commit, the library versions, and for each
pretrained model the path or hub id it came from with a content hash or revision."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["file_sha256", "pretrained_source", "provenance"]

#: Libraries whose versions a run records (those installed).
LIBRARIES = ("torch", "lightning", "torchvision", "torchmetrics", "diffusers", "jsonargparse")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pretrained_source(location: str | Path, revision: str | None = None) -> dict[str, Any]:
    """Where a pretrained model came from: a file (its SHA-256), a directory (the SHA-256 of
    its files' names and hashes) or a hub id (its ``revision``, when known)."""
    path = Path(location)
    if path.is_file():
        return {"path": str(path.resolve()), "sha256": file_sha256(path)}
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path)}:{file_sha256(file)}\n".encode())
        return {"path": str(path.resolve()), "sha256": digest.hexdigest()}
    return {"hub_id": str(location), "revision": revision}


def _version(name: str) -> str | None:
    loaded = getattr(sys.modules.get(name), "__version__", None)  # torch's has the CUDA tag
    if isinstance(loaded, str):
        return str(loaded)  # a plain str: torch's TorchVersion would not load weights-only
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@cache
def code_state() -> dict[str, Any]:
    """The suite's version, and its git commit (with ``dirty`` for uncommitted changes) when
    it runs from a checkout."""
    from dfkd_lightning import __version__

    state: dict[str, Any] = {"dfkd_lightning": __version__}
    if (PACKAGE_ROOT / ".git").exists():
        commit = _git("rev-parse", "HEAD")
        if commit:
            state["git_commit"] = commit
            state["git_dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return state


def provenance(pretrained: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole record (see the module docstring); primitives only."""
    libraries = {name: version for name in LIBRARIES if (version := _version(name))}
    record: dict[str, Any] = {
        **code_state(),
        "python": platform.python_version(),
        "libraries": libraries,
    }
    if pretrained:
        record["pretrained"] = pretrained
    return record
