"""Loss terms and samplers of data-free distillation for regression (Zhou & Chiam, 2023).

Notation of the paper: ``T`` teacher, ``S`` student, ``x_g`` synthetic inputs chosen to make
them disagree, ``x_p`` plain Gaussian inputs, ``beta``/``gamma`` the bounds that keep the
disagreement large but finite.
"""

from __future__ import annotations

import torch

from dfkd_lightning.errors import ConfigError


def generator_loss(
    teacher_out: torch.Tensor,
    student_out: torch.Tensor,
    inputs: torch.Tensor,
    beta: float,
    gamma: float,
    input_penalty: str = "sample",
) -> torch.Tensor:
    """The generator objective L_G of Zhou & Chiam (2023):
    ``mean_i[-(T(x_i) - S(x_i))^2 + beta ||x_i||^2 + gamma S(x_i)^2]``.

    ``input_penalty="batch"`` reproduces the released code, which adds
    ``beta * sum_j ||x_j||^2`` (the whole batch's squared norm) to every sample instead of
    ``beta ||x_i||^2``; it is the paper's penalty scaled by the batch size.
    """
    gap = (teacher_out - student_out).pow(2).flatten(1).sum(1)
    norms = inputs.flatten(1).pow(2).sum(1)
    if input_penalty == "batch":
        norms = norms.sum().expand_as(norms)
    elif input_penalty != "sample":
        raise ConfigError(f"input_penalty must be 'sample' or 'batch', got {input_penalty!r}")
    return (-gap + beta * norms + gamma * student_out.pow(2).flatten(1).sum(1)).mean()


def direct_loss(teacher_out: torch.Tensor, student_out: torch.Tensor, gamma: float) -> torch.Tensor:
    """The objective of direct input optimisation: ``mean_i[-(T - S)^2 + gamma S^2]``; the
    ``beta ||x||^2`` bound is the optimizer's weight decay on the inputs."""
    gap = (teacher_out - student_out).pow(2).flatten(1).sum(1)
    return (-gap + gamma * student_out.pow(2).flatten(1).sum(1)).mean()


def student_loss(
    teacher_g: torch.Tensor,
    student_g: torch.Tensor,
    teacher_p: torch.Tensor,
    student_p: torch.Tensor,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """The student objective L_S of Zhou & Chiam (2023),
    ``mean[a (T(x_g) - S(x_g))^2 + (1 - a)(T(x_p) - S(x_p))^2]``, and its two parts."""
    on_g = (teacher_g - student_g).pow(2).flatten(1).sum(1).mean()
    on_p = (teacher_p - student_p).pow(2).flatten(1).sum(1).mean()
    return {"loss": alpha * on_g + (1 - alpha) * on_p, "mse_synthetic": on_g, "mse_gaussian": on_p}


def latin_hypercube(
    n: int,
    low: torch.Tensor,
    high: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` Latin-hypercube samples in the box ``[low, high]`` (one per stratum and axis),
    on the CPU like ``low`` and ``high``.

    Drawn with torch's RNG (not scipy's) so that a resumed run draws the same samples.
    """
    dims = low.numel()
    strata = torch.argsort(torch.rand(dims, n, generator=generator), dim=1).T.float()
    unit = (strata + torch.rand(n, dims, generator=generator)) / n
    return low + unit * (high - low)
