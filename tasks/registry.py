"""Task families by name, so configs can refer to them."""

from typing import Any

from tasks.base import TaskFamily
from tasks.char_lm import CharLMFamily
from tasks.cnn_classifier import CNNClassifierFamily
from tasks.mlp_classifier import MLPClassifierFamily
from tasks.synthetic import QuadraticFamily, TeacherFamily
from tasks.vit_classifier import ViTClassifierFamily

FAMILIES: dict[str, type] = {family.name: family for family in (
    MLPClassifierFamily, CNNClassifierFamily, ViTClassifierFamily, CharLMFamily, TeacherFamily,
    QuadraticFamily)}


def make_family(name: str, **kwargs: Any) -> TaskFamily:
  """Builds the task family ``name``; raises ``ValueError`` naming the valid ones if unknown."""
  if name not in FAMILIES:
    raise ValueError(f"unknown task family '{name}'; valid choices: {sorted(FAMILIES)}")
  return FAMILIES[name](**kwargs)
