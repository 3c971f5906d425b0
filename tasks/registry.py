"""Task families by name, so configs can refer to them."""

from typing import Any

from tasks.base import TaskFamily
from tasks.mlp_classifier import MLPClassifierFamily

FAMILIES: dict[str, type] = {MLPClassifierFamily.name: MLPClassifierFamily}


def make_family(name: str, **kwargs: Any) -> TaskFamily:
  """Builds the task family ``name``; raises ``ValueError`` naming the valid ones if unknown."""
  if name not in FAMILIES:
    raise ValueError(f"unknown task family '{name}'; valid choices: {sorted(FAMILIES)}")
  return FAMILIES[name](**kwargs)
