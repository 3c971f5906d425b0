"""Learned-optimizer architectures by name, so configs and checkpoint cards can refer to them."""

import dataclasses
from typing import Any

from lopt.adafac_mlp_lopt import AdafacMLPLOpt
from lopt.base import LearnedOptimizer
from lopt.mlp_lopt import MLPLOpt
from lopt.mu_lopt import MuAdafacMLPLOpt, MuMLPLOpt
from lopt.ortho_mlp_lopt import OrthoMLPLOpt
from lopt.velo_lopt import VeLOLOpt

ARCHITECTURES: dict[str, type] = {cls.name: cls for cls in (MLPLOpt, AdafacMLPLOpt, VeLOLOpt,
                                                             MuMLPLOpt, MuAdafacMLPLOpt,
                                                             OrthoMLPLOpt)}


def make(name: str, **hyperparameters: Any) -> LearnedOptimizer:
  """Builds the architecture ``name`` with ``hyperparameters`` (lists are read as tuples).

  Raises ``ValueError`` naming the valid architectures when ``name`` is unknown.
  """
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown learned optimizer '{name}'; valid choices: {sorted(ARCHITECTURES)}")
  as_tuple = lambda v: tuple(v) if isinstance(v, list) else v
  return ARCHITECTURES[name](**{k: as_tuple(v) for k, v in hyperparameters.items()})


def hyperparameters(lopt: LearnedOptimizer) -> dict[str, Any]:
  """The hyperparameters that, with ``lopt.name``, rebuild ``lopt`` through ``make``."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(lopt).items()}
