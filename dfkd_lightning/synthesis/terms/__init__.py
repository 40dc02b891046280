"""Loss terms: the registry, the weighted objective and the per-step context they read."""

from dfkd_lightning.synthesis.terms import (
    classic,
    contrastive,
    diversity,
    regression,
    relation,
    rotation,
    student,
)
from dfkd_lightning.synthesis.terms.base import (
    TERMS,
    LossTerm,
    Objective,
    ObjectiveSpec,
    build_objective,
    register_term,
)
from dfkd_lightning.synthesis.terms.context import Needs, NetOutput, StepContext

__all__ = [
    "TERMS",
    "LossTerm",
    "Needs",
    "NetOutput",
    "Objective",
    "ObjectiveSpec",
    "StepContext",
    "build_objective",
    "classic",
    "contrastive",
    "diversity",
    "regression",
    "register_term",
    "relation",
    "rotation",
    "student",
]
