"""LightningModules: teacher training, KD with real data, and the data-free methods."""

from dfkd_lightning.methods.cmi import CMI
from dfkd_lightning.methods.dafl import DAFL
from dfkd_lightning.methods.datafree import DataFreeDistillation
from dfkd_lightning.methods.dda import DDA
from dfkd_lightning.methods.dedfkd import DEDFKD
from dfkd_lightning.methods.deepinversion import DeepInversion
from dfkd_lightning.methods.dfad import DFAD
from dfkd_lightning.methods.dfq import DFQ
from dfkd_lightning.methods.diffdfkd import DiffDFKD
from dfkd_lightning.methods.diffusion_prior import DiffusionPriorTraining
from dfkd_lightning.methods.distillation import KnowledgeDistillation
from dfkd_lightning.methods.evaluation import ClassifierEvaluation
from dfkd_lightning.methods.fastdfkd import FastDFKD
from dfkd_lightning.methods.incremental import ClassIncrementalLearning
from dfkd_lightning.methods.manual_steps import ManualSteps, NonFiniteLossError
from dfkd_lightning.methods.quantization import DataFreeQuantization
from dfkd_lightning.methods.quantization_aware import QuantizationAwareTraining
from dfkd_lightning.methods.regression_datafree import DataFreeRegression
from dfkd_lightning.methods.regression_evaluation import RegressorEvaluation
from dfkd_lightning.methods.regression_teacher import RegressionTeacherTraining
from dfkd_lightning.methods.rgal import RGAL
from dfkd_lightning.methods.teacher import TeacherTraining
from dfkd_lightning.methods.teacher_student import TeacherStudentModule
from dfkd_lightning.methods.zskt import ZSKT

#: The data-free methods by the name used in configs, tables and the benchmark.
DATA_FREE_METHODS: dict[str, type[DataFreeDistillation]] = {
    "dafl": DAFL,
    "zskt": ZSKT,
    "dfad": DFAD,
    "dfq": DFQ,
    "deepinversion": DeepInversion,
    "cmi": CMI,
    "fastdfkd": FastDFKD,
    "rgal": RGAL,
    "dedfkd": DEDFKD,
}
#: The data-free methods whose configs use a pretrained diffusion model (``pretrained`` needed).
DIFFUSION_METHODS: dict[str, type[DataFreeDistillation]] = {"diffdfkd": DiffDFKD, "dda": DDA}

__all__ = [
    "CMI",
    "DAFL",
    "DDA",
    "DATA_FREE_METHODS",
    "DIFFUSION_METHODS",
    "DEDFKD",
    "DFAD",
    "DFQ",
    "RGAL",
    "ZSKT",
    "ClassIncrementalLearning",
    "ClassifierEvaluation",
    "DataFreeDistillation",
    "DataFreeQuantization",
    "DataFreeRegression",
    "DiffDFKD",
    "DeepInversion",
    "DiffusionPriorTraining",
    "FastDFKD",
    "KnowledgeDistillation",
    "ManualSteps",
    "NonFiniteLossError",
    "QuantizationAwareTraining",
    "RegressionTeacherTraining",
    "RegressorEvaluation",
    "TeacherStudentModule",
    "TeacherTraining",
]
