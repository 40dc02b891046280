"""LightningModules: teacher training, KD with real data, and the data-free methods."""

from dfkd_lightning.methods.distillation import KnowledgeDistillation
from dfkd_lightning.methods.evaluation import ClassifierEvaluation
from dfkd_lightning.methods.teacher import TeacherTraining

__all__ = ["ClassifierEvaluation", "KnowledgeDistillation", "TeacherTraining"]
