"""Synthesizers: the components that make a data-free method's samples."""

from dfkd_lightning.synthesis.synthesizers.base import SampleSpec, Synthesizer, random_targets
from dfkd_lightning.synthesis.synthesizers.diffusion import DiffusionSynthesizer
from dfkd_lightning.synthesis.synthesizers.generators import (
    LATENT,
    ConditionalGenerator,
    MetaGenerator,
    PersistentGenerator,
    ResetGenerator,
    balanced_targets,
)
from dfkd_lightning.synthesis.synthesizers.noise import GaussianSampler
from dfkd_lightning.synthesis.synthesizers.pixels import LearnablePixels
from dfkd_lightning.synthesis.synthesizers.tabular import (
    DirectOptimization,
    LatinHypercubeSampler,
    TabularGenerator,
)

#: The synthesizers shipped with the suite, by class name (``dfkd list``).
SYNTHESIZERS: dict[str, type[Synthesizer]] = {
    cls.__name__: cls
    for cls in (
        LearnablePixels,
        PersistentGenerator,
        ResetGenerator,
        MetaGenerator,
        ConditionalGenerator,
        DiffusionSynthesizer,
        TabularGenerator,
        DirectOptimization,
        GaussianSampler,
        LatinHypercubeSampler,
    )
}

__all__ = [
    "LATENT",
    "SYNTHESIZERS",
    "ConditionalGenerator",
    "DiffusionSynthesizer",
    "DirectOptimization",
    "GaussianSampler",
    "LatinHypercubeSampler",
    "LearnablePixels",
    "MetaGenerator",
    "PersistentGenerator",
    "ResetGenerator",
    "SampleSpec",
    "Synthesizer",
    "balanced_targets",
    "TabularGenerator",
    "random_targets",
]
