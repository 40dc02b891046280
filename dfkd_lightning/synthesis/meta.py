"""Generator re-initialisation and meta-gradient helpers for CMI and FastDFKD.

* :func:`reinitialize` -- CMI (Fang et al., "Contrastive Model Inversion for Data-Free Knowledge
  Distillation", IJCAI 2021) re-initialises its generator before every synthesis round
  (``reset_model`` in ``datafree/synthesis/contrastive.py``, called unless ``feature_reuse``):
  Conv/ConvTranspose/Linear weights ~ N(0, 0.02) with zero bias, BatchNorm weights ~ N(1, 0.02)
  with zero bias. BatchNorm running statistics are *not* touched by CMI.
* :func:`reset_first_layer` -- FastDFKD's ``reset_l0`` (Fang et al., "Up to 100x Faster Data-free
  Knowledge Distillation", AAAI 2022; Fast-Datafree ``datafree/synthesis/fast_meta.py``), applied
  once, at synthesis round ``120 + warmup`` when ``--reset_l0 1``: ``l1.0`` (the latent
  projection) and ``conv_blocks.0`` (the first BatchNorm) get weights ~ N(0, 0.02) and zero bias.
  Note the BatchNorm *scale* is drawn around 0, not 1, exactly as in the released code.
* :func:`reptile_meta_gradient` -- REPTILE (Nichol et al., "On First-Order Meta-Learning
  Algorithms", 2018): ``meta.grad += scale * (meta - fast)``, Fast-Datafree's ``reptile_grad``,
  which hard-codes ``scale = 67`` (``--is_maml 0``).
* :func:`accumulate_first_order_gradient` -- first-order MAML (Finn et al., 2017), Fast-Datafree's
  ``fomaml_grad`` (``--is_maml 1``, the setting of all released CIFAR scripts): after every inner
  step's ``backward`` the fast generator's gradients are added to the meta generator's, and the
  meta optimiser (Adam, ``lr = lr_g * g_steps``, betas (0.5, 0.999)) steps once per round.

The gradient helpers pair parameters by position (``zip(meta.parameters(), fast.parameters())``,
as the released code does), check that the shapes agree, create a zero ``.grad`` where none
exists, and never touch buffers (BatchNorm running statistics).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from dfkd_lightning.errors import ConfigError

__all__ = [
    "FAST_DATAFREE_REPTILE_SCALE",
    "accumulate_first_order_gradient",
    "reinitialize",
    "reptile_meta_gradient",
    "reset_first_layer",
]

#: The factor Fast-Datafree's ``reptile_grad`` multiplies ``(meta - fast)`` by (``alpha=67``;
#: a commented-out ``alpha=40`` sits next to it). With the Adam meta-optimiser the factor mostly
#: cancels out (Adam is invariant to gradient scale up to ``eps``).
FAST_DATAFREE_REPTILE_SCALE = 67.0

_WEIGHT_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def reinitialize(
    module: nn.Module,
    scheme: Literal["cmi", "default"] = "cmi",
    reset_running_stats: bool = False,
) -> nn.Module:
    """Re-initialise every layer of ``module`` in place and return it (CMI, Fang et al. 2021).

    Args:
        module: the network, typically the generator, to reset.
        scheme: ``"cmi"`` follows CMI's ``reset_model``: Conv2d / ConvTranspose2d / Linear
            weights ~ N(0, 0.02) and biases 0; affine BatchNorm weights ~ N(1, 0.02) and
            biases 0; any other submodule with ``reset_parameters`` (e.g. an embedding or a
            Conv1d) gets its PyTorch default. ``"default"`` restores PyTorch's default init
            (``reset_parameters``) everywhere; BatchNorm affine parameters become ones / zeros.
        reset_running_stats: also reset BatchNorm running statistics (CMI does not).
    """
    if scheme not in ("cmi", "default"):
        raise ConfigError(f"scheme must be 'cmi' or 'default', got {scheme!r}")
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                if reset_running_stats:
                    m.reset_running_stats()
                if m.affine:
                    if scheme == "cmi":
                        nn.init.normal_(m.weight, 1.0, 0.02)
                    else:
                        nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            elif scheme == "cmi" and isinstance(m, _WEIGHT_LAYERS):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            else:
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
    return module


def reset_first_layer(generator: nn.Module, include_input_bn: bool = True) -> nn.Module:
    """FastDFKD's ``reset_l0`` (Fang et al., AAAI 2022): re-draw the generator's first layers.

    ``l1.0`` (the latent projection) and, with ``include_input_bn`` (the released default),
    ``conv_blocks.0`` (the first BatchNorm) get weights ~ N(0, 0.02) and zero biases, in place.
    ``include_input_bn=False`` resets ``l1.0`` only, like ``reset_l0`` in Fast-Datafree's
    non-meta ``fast.py``. Running statistics are left alone. Raises ``KeyError`` when the
    generator has no ``l1.0``.
    """
    names = {"l1.0"} | ({"conv_blocks.0"} if include_input_bn else set())
    modules = dict(generator.named_modules())
    if "l1.0" not in modules:
        raise KeyError("the generator has no submodule named 'l1.0'")
    with torch.no_grad():
        for name in sorted(names & modules.keys()):
            m = modules[name]
            weight = getattr(m, "weight", None)
            bias = getattr(m, "bias", None)
            if isinstance(weight, torch.Tensor):
                nn.init.normal_(weight, 0.0, 0.02)
            if isinstance(bias, torch.Tensor):
                nn.init.zeros_(bias)
    return generator


def _paired_parameters(
    meta: nn.Module, fast: nn.Module
) -> Iterator[tuple[nn.Parameter, nn.Parameter]]:
    meta_params = list(meta.parameters())
    fast_params = list(fast.parameters())
    if len(meta_params) != len(fast_params):
        raise ValueError(f"meta has {len(meta_params)} parameters but fast has {len(fast_params)}")
    for p_meta, p_fast in zip(meta_params, fast_params, strict=True):
        if p_meta.shape != p_fast.shape:
            raise ValueError(f"parameter shapes differ: {p_meta.shape} vs {p_fast.shape}")
        yield p_meta, p_fast


def _grad_buffer(p: nn.Parameter) -> torch.Tensor:
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


def reptile_meta_gradient(
    meta: nn.Module, fast: nn.Module, scale: float = FAST_DATAFREE_REPTILE_SCALE
) -> None:
    """REPTILE meta-gradient (Nichol et al., 2018): ``meta.grad += scale * (meta - fast)``.

    ``fast`` is the generator adapted from ``meta`` during one synthesis round; the gradient
    points from the adapted weights back to the meta weights, so an optimiser step on ``meta``
    moves it towards ``fast``. The default ``scale`` is Fast-Datafree's hard-coded 67.
    """
    with torch.no_grad():
        for p_meta, p_fast in _paired_parameters(meta, fast):
            diff = p_meta.detach() - p_fast.detach().to(device=p_meta.device, dtype=p_meta.dtype)
            _grad_buffer(p_meta).add_(diff, alpha=scale)


def accumulate_first_order_gradient(meta: nn.Module, fast: nn.Module) -> None:
    """First-order MAML (Finn et al., 2017): ``meta.grad += fast.grad`` for every parameter.

    Called after each inner ``backward`` of FastDFKD's synthesis round (Fang et al., AAAI 2022),
    so the meta gradient is the sum of the fast generator's gradients over the round's steps.
    Parameters of ``fast`` without a gradient contribute nothing.
    """
    with torch.no_grad():
        for p_meta, p_fast in _paired_parameters(meta, fast):
            buffer = _grad_buffer(p_meta)
            if p_fast.grad is not None:
                buffer.add_(p_fast.grad.to(device=buffer.device, dtype=buffer.dtype))
