"""Mixtures of task families: which families a population runs and how many slots each gets.

Families of a mixture differ in shapes (architecture, width, depth, data set), so they cannot share
one ``vmap``; a population of ``P`` tasks is cut into consecutive slices, one per family, each a
``vmap`` over its own ``task_params`` reading its own ``data()`` (``Mixture.data()`` is the tuple of
the members' data). ``slice_sizes`` apportions the slots deterministically by the
largest-remainder method: family ``i`` gets ``floor(q_i)`` slots, ``q_i = P w_i / sum(w)``, and the
slots left over go to the largest remainders ``q_i - floor(q_i)`` (earlier families first on ties).
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from tasks.base import TaskFamily
from tasks.registry import make_family

MIXTURE = "mixture"  # The task group name a config uses for a mixture.


@dataclasses.dataclass(frozen=True)
class Mixture:
  """``families[i]`` runs a share ``weights[i] / sum(weights)`` of the population."""

  families: tuple[TaskFamily, ...]
  weights: tuple[float, ...]
  names: tuple[str, ...] = ()

  def __post_init__(self):
    if not self.families:
      raise ValueError("a mixture needs at least one family")
    if len(self.weights) != len(self.families):
      raise ValueError(f"a mixture needs one weight per family: {len(self.families)} families, "
                       f"{len(self.weights)} weights")
    if self.names and len(self.names) != len(self.families):
      raise ValueError(f"a mixture needs one name per family: {len(self.families)} families, "
                       f"{len(self.names)} names")
    if min(self.weights) < 0 or sum(self.weights) <= 0:
      raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {self.weights}")

  def slice_sizes(self, population: int) -> tuple[int, ...]:
    """Slots of each family in a population of ``population``; they sum to ``population``.

    Raises ``ValueError`` if a family of positive weight would get no slot.
    """
    quotas = [population * w / sum(self.weights) for w in self.weights]
    sizes = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (sizes[i] - quotas[i], i))
    for i in by_remainder[:population - sum(sizes)]:
      sizes[i] += 1
    for i, (size, weight) in enumerate(zip(sizes, self.weights)):
      if weight > 0 and size == 0:
        label = self.names[i] if self.names else f"family {i} ({self.families[i].name})"
        raise ValueError(f"a population of {population} leaves no slot for {label} of weight "
                         f"{weight} among {len(self.families)} families; use a larger population")
    return tuple(sizes)

  def data(self) -> tuple:
    """Each family's ``data()``, in order."""
    return tuple(family.data() for family in self.families)


def make_mixture(members: Mapping[str, Mapping[str, Any]]) -> Mixture:
  """Builds a mixture from ``{member: {"name": family name, "weight": w, **family settings}}``.

  Members keep their order; a bad member raises ``ValueError`` naming it.
  """
  families, weights = [], []
  for member, settings in members.items():
    settings = dict(settings)
    try:
      weights.append(float(settings.pop("weight")))
      families.append(make_family(settings.pop("name"), **settings))
    except KeyError as e:
      raise ValueError(f"mixture member '{member}' has no {e} setting") from None
    except (ValueError, TypeError) as e:
      raise ValueError(f"mixture member '{member}': {e}") from None
  return Mixture(tuple(families), tuple(weights), tuple(members))
