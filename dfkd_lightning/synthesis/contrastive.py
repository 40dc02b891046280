"""Contrastive Model Inversion (Fang et al., "Contrastive Model Inversion for Data-Free
Knowledge Distillation", IJCAI 2021, Eq. 6-8).

CMI makes synthesised instances distinguishable from each other and from those of earlier
rounds: an instance feature (the concatenated per-layer channel means of the teacher's BN inputs,
see :meth:`BNStatisticsLoss.instance_features`) of a *local* (random resized crop) and a *global*
(flip / small crop) view of each image is projected by an MLP head, and an instance
discrimination loss treats the two views of one image as positives and every other instance
-- of the current batch and of a memory bank of earlier rounds -- as negatives.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["ContrastiveHead", "FeatureMemoryBank", "contrastive_loss"]


class ContrastiveHead(nn.Module):
    """CMI's MLP projection head (``MLPHead`` in zju-vipa/CMI).

    ``Linear(in_dim, hidden_dim) -> ReLU -> Linear(hidden_dim, head_dim)`` followed by L2
    normalisation of each output row. ``hidden_dim`` defaults to ``in_dim`` and ``head_dim`` to
    128, as in CMI's code. The output is float32.
    """

    def __init__(self, in_dim: int, head_dim: int = 128, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = in_dim if hidden_dim is None else hidden_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, head_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x).float(), p=2, dim=1)


class FeatureMemoryBank:
    """Fixed-capacity ring buffer of feature rows (CMI's memory bank of past instances).

    Rows are stored (detached) on ``device``; once full, :meth:`add` overwrites the oldest rows
    first. :meth:`sample` returns random stored rows without replacement. Unlike CMI's bank, any
    batch size may be added (CMI asserts ``capacity % n == 0``), and an empty bank samples to an
    empty ``(0, dim)`` tensor instead of CMI's random initial contents.
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity <= 0 or dim <= 0:
            raise ConfigError(f"capacity and dim must be positive, got {capacity}, {dim}")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.data = torch.zeros(self.capacity, self.dim, device=device, dtype=dtype)
        self._ptr = 0
        self._size = 0

    @property
    def device(self) -> torch.device:
        return self.data.device

    def __len__(self) -> int:
        return self._size

    def add(self, features: torch.Tensor) -> None:
        """Append rows of ``features`` (N, dim), overwriting the oldest rows when full."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {features.shape}")
        rows = features.detach().to(device=self.data.device, dtype=self.data.dtype)
        if rows.shape[0] > self.capacity:
            rows = rows[-self.capacity :]
        n = rows.shape[0]
        first = min(n, self.capacity - self._ptr)
        self.data[self._ptr : self._ptr + first] = rows[:first]
        if n > first:
            self.data[: n - first] = rows[first:]
        self._ptr = (self._ptr + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` distinct random stored rows (all of them, shuffled, when fewer are stored),
        drawn on the bank's device (or ``generator``'s)."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        k = min(n, self._size)
        if k == 0:
            return self.data.new_empty(0, self.dim)
        device = generator.device if generator is not None else self.data.device
        index = torch.randperm(self._size, generator=generator, device=device)[:k]
        index = index.to(self.data.device)
        return self.data[index]

    def stored(self) -> torch.Tensor:
        """All stored rows, oldest first."""
        if self._size < self.capacity:
            return self.data[: self._size].clone()
        return torch.cat([self.data[self._ptr :], self.data[: self._ptr]])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only: the stored rows (oldest first) and the capacity."""
        return {"rows": self.stored().cpu(), "capacity": torch.tensor(self.capacity)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        capacity = int(state["capacity"])
        rows = state["rows"]
        if capacity != self.capacity or rows.dim() != 2 or rows.shape[1] != self.dim:
            raise ValueError(
                f"memory bank state (capacity {capacity}, rows {tuple(rows.shape)}) does not fit "
                f"this bank (capacity {self.capacity}, dim {self.dim})"
            )
        self.data.zero_()
        self._ptr = 0
        self._size = 0
        self.add(rows)


def contrastive_loss(
    local_proj: torch.Tensor,
    global_proj: torch.Tensor,
    temperature: float = 0.1,
    *,
    mode: Literal["supcon", "local_to_global"] = "supcon",
    base_temperature: float | None = None,
    detach_global: bool = True,
    num_current: int | None = None,
) -> torch.Tensor:
    """CMI's instance-discrimination loss L_cr (Eq. 6-8) on projected, L2-normalised views.

    ``local_proj`` and ``global_proj`` are (M, D) projections of the local and global view of the
    same M instances, row ``i`` of each belonging to instance ``i`` (current batch followed by
    the memory-bank rows). The two views of an instance are positives; every other instance is a
    negative. The GLOBAL view is detached by default (``detach_global``), as in CMI's code:
    gradients reach the synthesizer only through the local view.

    ``mode="supcon"`` (default): SupContrast's unsupervised (SimCLR) loss as implemented by
    CMI's ``ContrastLoss`` with ``contrast_mode="all"`` on features stacked as (M, 2, D): each of
    the 2M rows is an anchor, its other view is the positive, all 2M - 2 other rows are
    negatives (the anchor itself is excluded from the denominator). Returns
    ``(T / base_T) * mean_anchors(-log softmax_pos)``; ``base_temperature=None`` means
    ``base_T = T`` (no rescaling). SupContrast/CMI default ``base_T = 0.07``, which rescales the
    loss by ``T / 0.07``.

    ``mode="local_to_global"``: the "naive" loss CMI's released code actually optimises (its
    SupCon call is commented out): ``cross_entropy(local @ global.T / T, arange(M))``, i.e. each
    local view must pick its own global view among all global views. If ``num_current`` is given
    and smaller than M, the per-anchor losses are averaged separately over the first
    ``num_current`` rows (current batch) and the rest (memory bank) and summed, as CMI does to
    keep the current batch's gradient from being diluted by the bank.
    """
    if local_proj.shape != global_proj.shape or local_proj.dim() != 2:
        raise ValueError(
            f"local and global projections must both be (M, D), got {tuple(local_proj.shape)} "
            f"and {tuple(global_proj.shape)}"
        )
    with torch.autocast(device_type=local_proj.device.type, enabled=False):
        local = local_proj.float()
        glob = global_proj.float()
        if detach_global:
            glob = glob.detach()
        m = local.shape[0]
        if mode == "supcon":
            feats = torch.cat([local, glob], dim=0)  # rows: view-major, like torch.unbind(dim=1)
            logits = feats @ feats.T / temperature
            self_mask = torch.eye(2 * m, dtype=torch.bool, device=feats.device)
            logits = logits.masked_fill(self_mask, float("-inf"))
            pos_index = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)]).to(feats.device)
            per_anchor = F.cross_entropy(logits, pos_index, reduction="none")
            scale = 1.0 if base_temperature is None else temperature / base_temperature
            return scale * per_anchor.mean()
        if mode == "local_to_global":
            logits = local @ glob.T / temperature
            labels = torch.arange(m, device=local.device)
            per_anchor = F.cross_entropy(logits, labels, reduction="none")
            if num_current is not None and 0 < num_current < m:
                return per_anchor[:num_current].mean() + per_anchor[num_current:].mean()
            return per_anchor.mean()
        raise ValueError(f"unknown contrastive mode {mode!r}")
