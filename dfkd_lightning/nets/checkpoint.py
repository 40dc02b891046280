"""Load classifier weights from our Lightning checkpoints, Fast-Datafree/CMI files or raw
state dicts, with errors that say what does not match and how to fix it.

Accepted files (always read with ``torch.load(path, map_location="cpu", weights_only=True)``):

* Lightning checkpoints of this package: ``{"state_dict": ..., "pytorch-lightning_version":
  ...}`` whose keys carry the attribute prefix of the net inside the module (``net.`` for the
  teacher-training module, ``student.`` / ``teacher.`` for distillation modules);
* Fast-Datafree / CMI teacher files ``{"state_dict": net.state_dict(), "epoch": ...,
  ...}``, possibly saved from ``nn.DataParallel`` (``module.`` prefix);
* raw state dicts (``torch.save(net.state_dict(), path)``).

With ``prefix=None`` the prefixes ``net.``, ``student.``, ``""`` and ``module.`` are tried in
this order and the first one whose stripped keys equal the net's keys wins. A distillation
checkpoint therefore loads its *student* by default; pass ``prefix="teacher."`` for the teacher.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dfkd_lightning.errors import UserError
from dfkd_lightning.producers import command_that_writes

__all__ = [
    "AUTO_PREFIXES",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "load_classifier_weights",
    "read_checkpoint",
]

#: Prefixes tried, in order, when ``prefix=None``.
AUTO_PREFIXES: tuple[str, ...] = ("net.", "student.", "", "module.")
_EXAMPLES = 3
# BatchNorm fills these in itself when they are absent (checkpoints from old torch versions).
_OPTIONAL_SUFFIX = "num_batches_tracked"


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint cannot be loaded into the given net (wrong classes, arch, or format)."""


class CheckpointNotFoundError(CheckpointMismatchError, FileNotFoundError):
    """The checkpoint path does not point to a file."""


def load_classifier_weights(
    net: nn.Module, path: str | os.PathLike[str], prefix: str | None = None
) -> nn.Module:
    """Load the weights stored in ``path`` into ``net`` (in place) and return ``net``.

    Args:
        net: the freshly built classifier (e.g. from ``build_classifier``).
        path: a Lightning checkpoint, a Fast-Datafree/CMI ``{"state_dict": ...}`` file or a raw
            state dict.
        prefix: key prefix of the net inside the checkpoint (``"teacher."``, ``"net."``, ``""``
            ...). ``None`` tries :data:`AUTO_PREFIXES` in order, so distillation checkpoints
            load their student unless ``prefix="teacher."`` is given.

    Raises:
        CheckpointNotFoundError: ``path`` is not a file (also a ``FileNotFoundError``).
        CheckpointMismatchError: the file is not a state dict, was trained for another number
            of classes, or belongs to another architecture.
    """
    location = os.fspath(path)
    state_dict = _read_state_dict(location)
    target = net.state_dict()
    aliases: Mapping[str, str] = getattr(net, "checkpoint_key_aliases", {})

    if prefix is None:
        candidates = [(p, _strip(state_dict, p, target, aliases)) for p in AUTO_PREFIXES]
        matching = [c for c in candidates if _keys_match(c[1], target)]
        if not matching:
            used, weights = max(candidates, key=lambda c: len(c[1].keys() & target.keys()))
            raise CheckpointMismatchError(
                _architecture_message(location, net, weights, target, used, state_dict)
            )
        used, weights = matching[0]
    else:
        used = prefix if not prefix or prefix.endswith(".") else prefix + "."
        weights = _strip(state_dict, used, target, aliases)
        if not weights:
            raise CheckpointMismatchError(
                f"checkpoint {location} has no keys starting with {used!r}; "
                f"its key groups are {_key_groups(state_dict)}. Pass one of those as prefix "
                "(e.g. prefix='teacher.'), or prefix=None to pick one automatically"
            )
        if not _keys_match(weights, target):
            raise CheckpointMismatchError(
                _architecture_message(location, net, weights, target, used, state_dict)
            )

    _check_shapes(location, net, weights, target, used, state_dict)
    net.load_state_dict(weights, strict=True)
    return net


def read_checkpoint(location: str | os.PathLike[str]) -> Any:
    """``torch.load(location, map_location="cpu", weights_only=True)``, with errors that name
    the file and the fix: missing, not written by ``torch.save``, truncated or corrupt, or
    holding Python objects (refused without running them)."""
    location = os.fspath(location)
    if not os.path.exists(location):
        resolved = os.path.abspath(location)
        where = "" if resolved == location else f" (resolved to {resolved})"
        made = command_that_writes(location)
        fix = f"; {made}" if made else ""
        raise CheckpointNotFoundError(f"checkpoint file not found: {location}{where}{fix}")
    if not os.path.isfile(location):
        raise CheckpointNotFoundError(f"checkpoint path {location} is not a file")
    try:
        return torch.load(location, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported operand" in str(err):  # not a pickle stream at all
            raise CheckpointMismatchError(
                f"checkpoint {location} could not be read by torch.load (it is not a pickle "
                "stream); is it a file written by torch.save?"
            ) from err
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (e.g. {found.group(1)})" if found else ""
        raise CheckpointMismatchError(
            f"checkpoint {location} holds non-tensor objects{what} that "
            "torch.load(weights_only=True) refuses to unpickle (nothing in it was run); only "
            "state dicts are accepted. If you trust the file, re-save it as "
            "torch.save({'state_dict': net.state_dict()}, path) (for a whole pickled model, "
            "save its state_dict)"
        ) from err
    except (EOFError, OSError, KeyError, RuntimeError, ValueError) as err:
        raise CheckpointMismatchError(
            f"checkpoint {location} is truncated or corrupt: torch.load failed with "
            f"{type(err).__name__}: {err}. Copy the file again (an interrupted copy or "
            "download leaves it cut short) or use another checkpoint"
        ) from err


def _read_state_dict(location: str) -> dict[str, torch.Tensor]:
    """Read ``location`` safely and return the tensor entries of its state dict."""
    payload = read_checkpoint(location)

    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    weights = (
        {k: v for k, v in payload.items() if isinstance(v, torch.Tensor)}
        if isinstance(payload, Mapping)
        else {}
    )
    if not weights:
        described = (
            f"a dict with keys {sorted(map(str, payload))[:10]}"
            if isinstance(payload, Mapping)
            else f"a {type(payload).__name__}"
        )
        raise CheckpointMismatchError(
            f"checkpoint {location} holds {described} but no state dict; expected "
            "{'state_dict': {name: tensor}} (Lightning / Fast-Datafree) or a raw state dict"
        )
    return weights


def _strip(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str,
    target: Mapping[str, torch.Tensor],
    aliases: Mapping[str, str],
) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` with the prefix removed and legacy names translated."""
    stripped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name not in target:
            for old, new in aliases.items():
                if name.startswith(old):
                    name = new + name[len(old) :]
                    break
        stripped[name] = value
    return stripped


def _required(keys: Iterable[str]) -> set[str]:
    return {k for k in keys if not k.endswith(_OPTIONAL_SUFFIX)}


def _keys_match(weights: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys cover the net's (optional BN counters aside) and add nothing."""
    return _required(target) <= weights.keys() <= target.keys()


def _head_name(net: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` of ``net`` (its classification layer)."""
    names = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def _check_shapes(
    location: str,
    net: nn.Module,
    weights: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    used: str,
    state_dict: Mapping[str, torch.Tensor],
) -> None:
    """Raise a class-count or architecture error for keys whose shapes differ."""
    wrong = [k for k in weights if weights[k].shape != target[k].shape]
    if not wrong:
        return
    head = _head_name(net)
    head_keys = {f"{head}.weight", f"{head}.bias"}
    weight_key = f"{head}.weight"
    if head is not None and set(wrong) <= head_keys and weight_key in weights:
        theirs, ours = weights[weight_key].shape, target[weight_key].shape
        if theirs[1:] == ours[1:]:
            raise CheckpointMismatchError(
                f"checkpoint {location} holds a classifier for {theirs[0]} classes "
                f"({weight_key} {list(theirs)}) but the model was built with "
                f"num_classes={ours[0]}; set num_classes={theirs[0]} (use the data module of "
                f"the dataset it was trained on) or load a checkpoint trained on {ours[0]} "
                "classes"
            )
    raise CheckpointMismatchError(
        _architecture_message(location, net, weights, target, used, state_dict)
    )


def _architecture_message(
    location: str,
    net: nn.Module,
    weights: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    used: str,
    state_dict: Mapping[str, torch.Tensor],
) -> str:
    """Describe missing, unexpected and mis-shaped keys of ``weights`` against ``target``."""
    missing = sorted(_required(target) - weights.keys())
    unexpected = sorted(weights.keys() - target.keys())
    wrong = [
        f"{k}: checkpoint {list(weights[k].shape)} vs model {list(target[k].shape)}"
        for k in weights
        if k in target and weights[k].shape != target[k].shape
    ]
    parts = [
        f"{len(missing)} missing keys{_examples(missing)}",
        f"{len(unexpected)} unexpected keys{_examples(unexpected)}",
        f"{len(wrong)} keys with different shapes{_examples(wrong)}",
    ]
    return (
        f"checkpoint {location} does not match {type(net).__name__} "
        f"({len(target)} keys in the model, {len(weights)} in the checkpoint under prefix "
        f"{used!r}): {'; '.join(parts)}. Checkpoint key groups: {_key_groups(state_dict)}. "
        "Build the architecture the checkpoint was trained with, or pass the prefix of the "
        "wanted net (one of the key groups, e.g. prefix='teacher.')"
    )


def _examples(items: list[str]) -> str:
    if not items:
        return ""
    more = ", ..." if len(items) > _EXAMPLES else ""
    return f" (e.g. {', '.join(items[:_EXAMPLES])}{more})"


def _key_groups(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Summarise the first key components, e.g. ``'student.' (120 keys), 'teacher.' (240)``."""
    groups = Counter(key.split(".", 1)[0] + "." if "." in key else key for key in state_dict)
    return ", ".join(f"{name!r} ({count} keys)" for name, count in groups.most_common(6))
