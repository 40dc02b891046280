"""Fully connected regressor used as a small teacher/student for tabular data."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["ACTIVATIONS", "MLPRegressor"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLPRegressor(nn.Module):
    """Multi-layer perceptron mapping flattened inputs to ``out_features`` real outputs.

    ``hidden`` lists the widths of the hidden layers (each followed by ``activation``); the
    features returned with ``return_features=True`` are the last hidden activation (the
    flattened input when ``hidden`` is empty).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (500,),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        self.feature_dim = width
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_features)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return predictions ``(N, out_features)``, or ``(predictions, features)``."""
        features = self.hidden(torch.flatten(x, 1))
        prediction = self.out(features)
        return (prediction, features) if return_features else prediction
