"""Forward hooks keeping the outputs of a network's stages (for attention transfer)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

_STAGE = re.compile(r"^(layer|block)\d+$")


def default_stage_names(net: nn.Module) -> list[str]:
    """Top-level children named ``layer<i>`` (ResNets) or ``block<i>`` (WRN, VGG), in order."""
    return [name for name, _ in net.named_children() if _STAGE.match(name)]


class StageOutputs:
    """Keeps the outputs of ``names`` (default: :func:`default_stage_names`) of ``net``
    after each forward, in order, in :attr:`outputs`."""

    def __init__(self, net: nn.Module, names: Sequence[str] | None = None) -> None:
        self.names = list(names) if names is not None else default_stage_names(net)
        if not self.names:
            raise ValueError(
                f"{type(net).__name__} has no stage modules named layer<i>/block<i>; "
                "pass the module names to hook explicitly"
            )
        modules = dict(net.named_modules())
        missing = [name for name in self.names if name not in modules]
        if missing:
            raise ValueError(f"{type(net).__name__} has no modules {missing}")
        self._latest: dict[str, torch.Tensor] = {}
        self._handles = [
            modules[name].register_forward_hook(self._keeper(name)) for name in self.names
        ]

    def _keeper(self, name: str):
        def keep(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
            self._latest[name] = output

        return keep

    @property
    def outputs(self) -> list[torch.Tensor]:
        return [self._latest[name] for name in self.names]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._latest.clear()
