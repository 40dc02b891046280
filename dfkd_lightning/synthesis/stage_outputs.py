"""The stages of a network whose outputs attention transfer compares."""

from __future__ import annotations

import re

from torch import nn

_STAGE = re.compile(r"^(layer|block)\d+$")


def default_stage_names(net: nn.Module) -> list[str]:
    """Top-level children named ``layer<i>`` (ResNets) or ``block<i>`` (WRN, VGG), in order."""
    return [name for name, _ in net.named_children() if _STAGE.match(name)]
