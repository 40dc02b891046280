"""The small DCGAN-style image generator shared by the generative DFKD methods.

The layout is the one of Fast-Datafree's / CMI's ``datafree.models.generator.Generator`` (used by
their DAFL, ZSKT, DFQ, DFAD, CMI and FastDFKD runs), which itself follows DAFL's generator
(Chen et al., "Data-Free Learning of Student Networks", ICCV 2019)::

    l1          = Sequential(Linear(nz, 2*ngf * s*s))          # s = img_size // 4
    (reshape to 2*ngf x s x s)
    conv_blocks = Sequential(
        0  BatchNorm2d(2*ngf),
        1  Upsample(x2, nearest),
        2  Conv2d(2*ngf, 2*ngf, 3, padding=1, bias=False),
        3  BatchNorm2d(2*ngf),
        4  LeakyReLU(0.2),
        5  Upsample(x2, nearest),
        6  Conv2d(2*ngf, ngf, 3, padding=1, bias=False),
        7  BatchNorm2d(ngf),
        8  LeakyReLU(0.2),
        9  Conv2d(ngf, nc, 3, padding=1),                        # with bias
        10 output head (see below),
    )

Parameter and buffer names therefore match Fast-Datafree's, so its generator checkpoints load
as they are, and FastDFKD's ``reset_l0`` (which addresses ``l1.0`` and ``conv_blocks.0``) finds
the same modules here (:func:`dfkd_lightning.synthesis.meta.reset_first_layer`).

Output heads:

* ``"sigmoid"`` (Fast-Datafree / CMI): images in ``[0, 1]``; the caller normalises them with the
  dataset mean/std before feeding a classifier.
* ``"tanh"``: images in ``[-1, 1]``.
* ``"bn"``: ``Tanh`` followed by ``BatchNorm2d(nc, affine=False)``, the head of DAFL's released
  generator and of DFAD's ``GeneratorA`` (Fang et al., "Data-Free Adversarial Distillation",
  2019). The output is already standardised per channel (batch statistics in training mode), so
  it is fed to the classifier without dataset normalisation.

Differences to DAFL's / DFAD's own generators (not reproduced here): their two 3x3 convolutions
carry a bias, DAFL's inner BatchNorms use ``eps=0.8`` (``BatchNorm2d(C, 0.8)``), and they use
``F.interpolate`` instead of ``nn.Upsample`` (same nearest-neighbour result).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from dfkd_lightning.errors import ConfigError

__all__ = ["Generator", "GeneratorOutput"]

GeneratorOutput = Literal["sigmoid", "tanh", "bn"]
_OUTPUTS: tuple[str, ...] = ("sigmoid", "tanh", "bn")


class Generator(nn.Module):
    """DCGAN-style generator ``z -> image`` (DAFL / Fast-Datafree layout).

    Args:
        nz: latent size.
        ngf: base width; the hidden feature maps have ``2 * ngf`` and ``ngf`` channels.
        img_size: output side length; must be divisible by 4 (e.g. 28, 32, 64).
        nc: output channels.
        output: output head, ``"sigmoid"`` ([0, 1]), ``"tanh"`` ([-1, 1]) or ``"bn"``
            (tanh + non-affine BatchNorm, DAFL/DFAD).
    """

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        img_size: int = 32,
        nc: int = 3,
        output: GeneratorOutput = "sigmoid",
    ) -> None:
        super().__init__()
        if img_size <= 0 or img_size % 4 != 0:
            raise ConfigError(f"img_size must be a positive multiple of 4, got {img_size}")
        if output not in _OUTPUTS:
            raise ConfigError(f"output must be one of {_OUTPUTS}, got {output!r}")
        self.nz = nz
        self.ngf = ngf
        self.img_size = img_size
        self.nc = nc
        self.output = output
        self.init_size = img_size // 4

        self.l1 = nn.Sequential(nn.Linear(nz, 2 * ngf * self.init_size**2))
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, 2 * ngf, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, nc, 3, stride=1, padding=1),
            *self._head(output, nc),
        )

    @staticmethod
    def _head(output: str, nc: int) -> list[nn.Module]:
        if output == "sigmoid":
            return [nn.Sigmoid()]
        if output == "tanh":
            return [nn.Tanh()]
        return [nn.Tanh(), nn.BatchNorm2d(nc, affine=False)]

    @property
    def hparams(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild an identical architecture."""
        return {
            "nz": self.nz,
            "ngf": self.ngf,
            "img_size": self.img_size,
            "nc": self.nc,
            "output": self.output,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents ``(B, nz)`` to images ``(B, nc, img_size, img_size)``."""
        out = self.l1(z.flatten(1))
        out = out.view(out.shape[0], -1, self.init_size, self.init_size)
        return self.conv_blocks(out)

    def clone(self) -> Generator:
        """An independent copy with the same weights, buffers, device, dtype and mode.

        FastDFKD's inner loop optimises such a copy (the "fast" generator) starting from the
        meta generator (Fang et al., AAAI 2022; Fast-Datafree ``Generator.clone``).
        """
        twin = Generator(**self.hparams)
        reference = next(self.parameters())
        twin.to(device=reference.device, dtype=reference.dtype)
        twin.load_state_dict(self.state_dict())
        twin.train(self.training)
        return twin
