"""Training tasks for meta-training and evaluating learned optimizers.

Every family takes ``param_scale_range`` (``tasks.reparameterization``): per task, the parameters
stored at another scale.
"""

from tasks.base import ROLES, SPLITS, Data, Task, TaskFamily, family_roles
from tasks.char_lm import CharLMFamily
from tasks.classification import ClassificationTask, ClassifierFamily
from tasks.cnn_classifier import CNNClassifierFamily
from tasks.datasets import DATASETS
from tasks.mixture import MIXTURE, Mixture, make_mixture
from tasks.mlp_classifier import MLPClassifierFamily
from tasks.mup import PARAMETRIZATIONS, mup_adam
from tasks.objectives import NORMALIZATIONS
from tasks.registry import FAMILIES, make_family
from tasks.synthetic import QuadraticFamily, TeacherFamily
from tasks.text import CORPORA
from tasks.vit_classifier import ViTClassifierFamily

__all__ = ["CNNClassifierFamily", "CORPORA", "CharLMFamily", "ClassificationTask",
           "ClassifierFamily", "DATASETS", "Data", "FAMILIES", "MIXTURE", "MLPClassifierFamily",
           "Mixture", "NORMALIZATIONS", "PARAMETRIZATIONS", "QuadraticFamily", "ROLES", "SPLITS",
           "Task", "TaskFamily", "TeacherFamily", "ViTClassifierFamily", "family_roles",
           "make_family", "make_mixture", "mup_adam"]
