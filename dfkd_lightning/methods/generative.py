"""Generator-based data-free methods: one persistent generator trained against the student."""

from __future__ import annotations

from typing import Any, Literal

import torch

from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.nets.generator import Generator


class GenerativeDistillation(DataFreeDistillation):
    """Base of DAFL, ZSKT, DFAD and DFQ.

    A DCGAN-style generator (``nz``, ``ngf``) persists across the run. A synthesis
    round is ``g_steps`` generator updates (Adam ``lr_g``, ``g_betas``) on
    :meth:`generator_terms` of fresh samples, weighted by :meth:`loss_weights`;
    each student step then distils on ``batch_size`` fresh generator samples (no
    pool). Under DDP the generator is shared: its gradients are averaged across
    ranks, so every rank holds the same generator while drawing its own noise.

    ``reuse_synthesis_batch`` makes the student train on the latents of the last generator
    step (re-rendered by the updated generator: ZSKT's pseudo-batch, DAFL's shared batch)
    instead of fresh noise.

    ``generator_output="sigmoid"`` makes [0, 1] images that are normalised with the
    dataset's mean/std; ``"tanh"``/``"bn"`` (DAFL's and DFAD's heads) produce
    network inputs directly.
    """

    sync_synthesis = True
    uses_pool = False

    def __init__(
        self,
        *args: Any,
        nz: int = 256,
        ngf: int = 64,
        generator_output: Literal["sigmoid", "tanh", "bn"] = "sigmoid",
        lr_g: float = 1e-3,
        g_betas: tuple[float, float] = (0.5, 0.999),
        reuse_synthesis_batch: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        channels, size, _ = self.synthesis_shape
        self.generator = Generator(
            nz=nz, ngf=ngf, img_size=size, nc=channels, output=generator_output
        )
        self.nz, self.lr_g, self.g_betas = nz, lr_g, tuple(g_betas)
        self.generator_output = generator_output
        self.reuse_synthesis_batch = reuse_synthesis_batch
        self._last_z: torch.Tensor | None = None

    def loss_weights(self) -> dict[str, float]:
        """Weight of each generator term; terms with weight 0 are not computed."""
        raise NotImplementedError

    def generator_terms(
        self, inputs: torch.Tensor, weights: dict[str, float]
    ) -> dict[str, torch.Tensor]:
        """Unweighted generator loss terms on normalised ``inputs`` (with grad)."""
        raise NotImplementedError

    def configure_synthesis_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.generator.parameters(), lr=self.lr_g, betas=self.g_betas)]

    def generate(self, n: int, z: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples (fresh, or of the latents ``z``) as normalised network inputs."""
        if z is None:
            z = torch.randn(n, self.nz, device=self.device)
            self._last_z = z
        images = self.to_input_size(self.generator(z))
        return self.normalize(images) if self.generator_output == "sigmoid" else images

    def synthesize(self) -> None:
        optimizer = self.synthesis_optimizers()[0]
        weights = {name: w for name, w in self.loss_weights().items() if w != 0}
        terms: dict[str, torch.Tensor] = {}
        for _ in range(self.g_steps):
            terms = self.generator_terms(self.generate(self.synthesis_batch_size), weights)
            loss = sum(weights[name] * terms[name] for name in weights)
            self.optimizer_step(optimizer, loss)
            terms["loss"] = loss
            self.images_synthesized += self.synthesis_batch_size
        if terms:
            self.log_terms("synth", terms)
        return None

    def student_inputs(self) -> torch.Tensor:
        reuse = self.reuse_synthesis_batch and self._last_z is not None
        with torch.no_grad():
            if reuse:
                return self.generate(len(self._last_z), z=self._last_z)
            inputs = self.generate(self.batch_size)
        self.images_synthesized += self.batch_size
        return inputs
