"""DeepInversion's feature-distribution regulariser as forward hooks on BatchNorm layers.

Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion" (CVPR 2020),
Eq. (4)::

    R_feature(x) = sum_l || mu_l(x) - E[mu_l | X] ||_2 + || sigma^2_l(x) - E[sigma^2_l | X] ||_2

where ``mu_l(x)`` / ``sigma^2_l(x)`` are the per-channel batch mean and (biased) variance of the
*input* of BN layer ``l`` and the expectations are the layer's ``running_mean`` /
``running_var``. Both norms are un-squared L2 norms, as in the paper and in the authors' code.

FastDFKD (Fang et al., "Up to 100x Faster Data-free Knowledge Distillation", AAAI 2022) adds a
momentum blend of the statistics of earlier synthesis rounds (``mmt_rate`` in the released
Fast-Datafree ``DeepInversionHook``): once a blend ``(mean_mmt, var_mmt)`` exists, the running
statistics are compared against ``(1 - m) * batch_stat + m * stat_mmt`` instead of the batch
statistic alone, and after a synthesis round the blend is updated with
``stat_mmt <- m * stat_mmt + (1 - m) * batch_stat`` (initialised with the first batch).

The hooks also record per-instance channel means of the BN input (CMI's ``InstanceMeanHook``),
which CMI (Fang et al., IJCAI 2021) uses as the instance feature for its contrastive loss.

All statistics are computed in float32 with autocast disabled, so the regulariser stays
accurate when the network runs under bf16/fp16 autocast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dfkd_lightning.errors import ConfigError

__all__ = ["BNStatisticsHook", "BNStatisticsLoss"]


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch mean, biased batch variance (both (C,)) and instance means ((N, C)) in float32."""
    if x.dim() < 2:
        raise ValueError(f"BatchNorm input must have at least 2 dims (N, C, ...), got {x.dim()}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        reduce_dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x, dim=reduce_dims, correction=0)
        instance_mean = x.mean(dim=list(range(2, x.dim()))) if x.dim() > 2 else x
    return mean, var, instance_mean


class BNStatisticsHook:
    """Forward hook on one BatchNorm layer computing DeepInversion's Eq. (4) term for it.

    After each forward of the hooked layer:

    * ``loss`` -- ``||mu - running_mean||_2 + ||var - running_var||_2`` (float32 scalar, with
      autograd graph to the layer input); with a FastDFKD momentum blend, ``mu``/``var`` are
      replaced by ``(1 - m) * batch_stat + m * stat_mmt``.
    * ``batch_mean`` / ``batch_var`` -- the per-channel statistics of the input, shape (C,).
    * ``instance_mean`` -- per-instance channel means of the input, shape (N, C) (CMI).

    Works for any ``torch.nn.modules.batchnorm._BatchNorm`` (BatchNorm1d/2d/3d, SyncBatchNorm)
    that tracks running statistics. ``momentum`` is FastDFKD's ``mmt_rate`` ``m``.

    It is registered as a forward *pre*-hook (the authors use a post-forward hook): the value is
    identical for a teacher in eval mode, and in train mode the running statistics are read
    before the layer's own update of them. Statistics are those of the local (per-process)
    batch, also for SyncBatchNorm, as in the authors' multi-GPU code.
    """

    def __init__(self, module: _BatchNorm, momentum: float = 0.0) -> None:
        if not isinstance(module, _BatchNorm):
            raise TypeError(f"expected a BatchNorm layer, got {type(module).__name__}")
        if module.running_mean is None or module.running_var is None:
            raise ValueError("BNStatisticsHook needs a BatchNorm layer with running statistics")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.module = module
        self.momentum = float(momentum)
        self.loss: torch.Tensor | None = None
        self.batch_mean: torch.Tensor | None = None
        self.batch_var: torch.Tensor | None = None
        self.instance_mean: torch.Tensor | None = None
        self.mean_mmt: torch.Tensor | None = None
        self.var_mmt: torch.Tensor | None = None
        #: Whether the hook records (a gated :class:`BNStatisticsLoss` switches it).
        self.enabled = True
        self._handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if not self.enabled:
            return
        mean, var, instance_mean = _channel_stats(inputs[0])
        self.batch_mean, self.batch_var, self.instance_mean = mean, var, instance_mean
        with torch.autocast(device_type=mean.device.type, enabled=False):
            if self.mean_mmt is not None and self.var_mmt is not None:
                m = self.momentum
                mean = (1.0 - m) * mean + m * self.mean_mmt.to(mean.device)
                var = (1.0 - m) * var + m * self.var_mmt.to(var.device)
            mean_gap = mean - self.module.running_mean.detach().float()
            var_gap = var - self.module.running_var.detach().float()
            self.loss = torch.linalg.vector_norm(mean_gap) + torch.linalg.vector_norm(var_gap)

    def update_momentum(self) -> None:
        """Fold the last batch's detached statistics into the FastDFKD blend.

        ``stat_mmt <- m * stat_mmt + (1 - m) * batch_stat``; the first call initialises the blend
        with the batch statistics.
        """
        if self.batch_mean is None or self.batch_var is None:
            raise RuntimeError("update_momentum() called before any forward through the layer")
        mean, var = self.batch_mean.detach().clone(), self.batch_var.detach().clone()
        if self.mean_mmt is None or self.var_mmt is None:
            self.mean_mmt, self.var_mmt = mean, var
        else:
            m = self.momentum
            self.mean_mmt = m * self.mean_mmt.to(mean.device) + (1.0 - m) * mean
            self.var_mmt = m * self.var_mmt.to(var.device) + (1.0 - m) * var

    def reset_momentum(self) -> None:
        """Drop the momentum blend (back to plain DeepInversion)."""
        self.mean_mmt = None
        self.var_mmt = None

    def clear(self) -> None:
        """Release the tensors (and autograd graph) kept from the last forward."""
        self.loss = None
        self.batch_mean = None
        self.batch_var = None
        self.instance_mean = None

    def remove(self) -> None:
        """Unregister the forward hook and release stored tensors."""
        self._handle.remove()
        self.clear()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The momentum blend as ``{"mean_mmt", "var_mmt"}`` (empty when not initialised)."""
        if self.mean_mmt is None or self.var_mmt is None:
            return {}
        return {
            "mean_mmt": self.mean_mmt.detach().clone(),
            "var_mmt": self.var_mmt.detach().clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the blend from :meth:`state_dict`; an empty dict resets it."""
        unexpected = set(state) - {"mean_mmt", "var_mmt"}
        if unexpected:
            raise KeyError(f"unexpected keys in BNStatisticsHook state: {sorted(unexpected)}")
        if not state:
            self.reset_momentum()
            return
        if set(state) != {"mean_mmt", "var_mmt"}:
            raise KeyError("BNStatisticsHook state needs both 'mean_mmt' and 'var_mmt'")
        num_channels = self.module.running_mean.numel()
        device = self.module.running_mean.device
        loaded = []
        for key in ("mean_mmt", "var_mmt"):
            value = state[key]
            if value.shape != (num_channels,):
                raise ValueError(
                    f"{key} has shape {tuple(value.shape)}, expected ({num_channels},)"
                )
            loaded.append(value.detach().to(device=device, dtype=torch.float32).clone())
        self.mean_mmt, self.var_mmt = loaded


class BNStatisticsLoss:
    """DeepInversion's R_feature (Eq. 4) over every BatchNorm layer of ``net``.

    Usage: build once, run ``net(x)``, then call the object to get
    ``first_bn_multiplier * R_first + sum_{l > first} R_l`` (``first_bn_multiplier`` is the
    ``coefficients["first_bn_multiplier"]`` of NVlabs' ``imagenet_inversion.py``; 1.0 recovers
    the paper). ``momentum`` enables FastDFKD's statistic blending (``bn_mmt``; 0 disables it,
    the Fast-Datafree CIFAR scripts use 0.9). Layers without running statistics
    (``track_running_stats=False``) are skipped. ``gated`` hooks record only inside
    :meth:`recording` (the data-free loop records synthesis forwards only).
    """

    def __init__(
        self,
        net: nn.Module,
        momentum: float = 0.0,
        first_bn_multiplier: float = 1.0,
        gated: bool = False,
    ):
        self.momentum = float(momentum)
        self.first_bn_multiplier = float(first_bn_multiplier)
        self.names: list[str] = []
        self.hooks: list[BNStatisticsHook] = []
        for name, module in net.named_modules():
            if isinstance(module, _BatchNorm) and module.running_mean is not None:
                self.names.append(name or "_root")
                self.hooks.append(BNStatisticsHook(module, momentum=self.momentum))
        if not self.hooks:
            raise ConfigError("the network has no BatchNorm layer with running statistics")
        for hook in self.hooks:
            hook.enabled = not gated

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the statistics of the forwards inside the block (and only those)."""
        previous = [hook.enabled for hook in self.hooks]
        for hook in self.hooks:
            hook.clear()
            hook.enabled = True
        try:
            yield
        finally:
            for hook, enabled in zip(self.hooks, previous, strict=True):
                hook.enabled = enabled

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[BNStatisticsHook]:
        return iter(self.hooks)

    def layer_losses(self) -> list[torch.Tensor]:
        """Per-layer R_feature terms (unweighted) from the last forward."""
        losses = []
        for name, hook in zip(self.names, self.hooks, strict=True):
            if hook.loss is None:
                raise RuntimeError(
                    f"BN layer '{name}' has no statistics: run a forward of the network first"
                )
            losses.append(hook.loss)
        return losses

    def __call__(self) -> torch.Tensor:
        """``first_bn_multiplier * R_0 + sum_{l>0} R_l`` from the last forward (float32)."""
        losses = self.layer_losses()
        total = self.first_bn_multiplier * losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total

    def instance_features(self) -> torch.Tensor:
        """CMI's instance feature: concatenated per-layer instance means, shape (N, sum C)."""
        feats = []
        for name, hook in zip(self.names, self.hooks, strict=True):
            if hook.instance_mean is None:
                raise RuntimeError(
                    f"BN layer '{name}' has no statistics: run a forward of the network first"
                )
            feats.append(hook.instance_mean)
        return torch.cat(feats, dim=1)

    def update_momentum(self) -> None:
        """Fold the last forward's statistics into every hook's FastDFKD blend."""
        for hook in self.hooks:
            hook.update_momentum()

    def reset_momentum(self) -> None:
        for hook in self.hooks:
            hook.reset_momentum()

    def clear(self) -> None:
        """Release tensors kept from the last forward (e.g. before checkpointing)."""
        for hook in self.hooks:
            hook.clear()

    def remove(self) -> None:
        """Unregister every hook."""
        for hook in self.hooks:
            hook.remove()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<layer name>.mean_mmt" | "<layer name>.var_mmt": Tensor}`` (tensors only)."""
        state: dict[str, torch.Tensor] = {}
        for name, hook in zip(self.names, self.hooks, strict=True):
            for key, value in hook.state_dict().items():
                state[f"{name}.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the blends; layers absent from ``state`` have their blend reset."""
        per_layer: dict[str, dict[str, torch.Tensor]] = {name: {} for name in self.names}
        for key, value in state.items():
            name, _, field = key.rpartition(".")
            if name not in per_layer:
                raise KeyError(f"unexpected key in BNStatisticsLoss state: {key!r}")
            per_layer[name][field] = value
        for name, hook in zip(self.names, self.hooks, strict=True):
            hook.load_state_dict(per_layer[name])
