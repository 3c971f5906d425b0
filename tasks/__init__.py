"""Training tasks for meta-training and evaluating learned optimizers."""

from tasks.base import ROLES, SPLITS, Task, TaskFamily
from tasks.datasets import DATASETS
from tasks.mlp_classifier import MLPClassifier, MLPClassifierFamily
from tasks.registry import FAMILIES, make_family

__all__ = ["DATASETS", "FAMILIES", "MLPClassifier", "MLPClassifierFamily", "ROLES", "SPLITS",
           "Task", "TaskFamily", "make_family"]
