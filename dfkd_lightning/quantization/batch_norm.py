"""BatchNorm layers that keep their running statistics while the rest of a network trains."""

from __future__ import annotations

from typing import Literal

from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = [
    "BATCH_NORM_MODES",
    "BatchNormMode",
    "FixedStatisticsBatchNorm1d",
    "FixedStatisticsBatchNorm2d",
    "fix_batch_norm_statistics",
]

#: ``fixed``: normalise with the pretrained running statistics (GDFQ's "fine-tuning with fixed
#: BNS"), ``reestimate``: normalise with the batch's and re-estimate the running statistics.
BatchNormMode = Literal["fixed", "reestimate"]
BATCH_NORM_MODES: tuple[str, ...] = ("fixed", "reestimate")


class _FixedStatistics:
    """Always in eval mode: normalises with its running statistics and never updates them;
    its affine weight and bias still train."""

    def train(self, mode: bool = True) -> nn.Module:
        return super().train(False)  # type: ignore[misc]


class FixedStatisticsBatchNorm1d(_FixedStatistics, nn.BatchNorm1d):
    """An ``nn.BatchNorm1d`` on fixed running statistics."""


class FixedStatisticsBatchNorm2d(_FixedStatistics, nn.BatchNorm2d):
    """An ``nn.BatchNorm2d`` on fixed running statistics."""


_FIXED: dict[type[nn.Module], type[nn.Module]] = {
    nn.BatchNorm1d: FixedStatisticsBatchNorm1d,
    nn.BatchNorm2d: FixedStatisticsBatchNorm2d,
}


def _fixed(layer: nn.Module) -> nn.Module:
    fixed_type = _FIXED[type(layer)]
    assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
    fixed = fixed_type(
        layer.num_features,
        eps=layer.eps,
        momentum=layer.momentum,
        affine=layer.affine,
        track_running_stats=layer.track_running_stats,
    )
    fixed.load_state_dict(layer.state_dict())
    return fixed.to(next(iter(layer.state_dict().values())).device)


def fix_batch_norm_statistics(net: nn.Module, mode: BatchNormMode = "fixed") -> nn.Module:
    """``net`` with every ``BatchNorm1d``/``BatchNorm2d`` on fixed statistics (``fixed``; the
    same state-dict keys) or unchanged (``reestimate``), in place."""
    if mode not in BATCH_NORM_MODES:
        raise ConfigError(f"batch_norm must be one of {', '.join(BATCH_NORM_MODES)}, got {mode!r}")
    if mode == "reestimate":
        return net
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) in _FIXED:
                setattr(module, name, _fixed(child))
    return net
