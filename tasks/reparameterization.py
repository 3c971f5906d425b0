"""Weight-scale reparameterisation: each task of a family stores its parameters at its own scale.

A family with ``param_scale_range=(low, high)`` (learned_optimization's reparameterised task
families, Celo2's augmentation) draws, per task, one factor ``c`` log-uniform in ``[low, high]``
into its ``task_params`` (as ``param_scale``, so that a population is a ``vmap`` over it). The task
stores ``q = p / c`` instead of its parameters ``p``: ``init`` returns the base task's ``p_0 / c``,
and ``loss`` and ``evaluate`` are the base task's at ``c q``:

    L_c(q) = L(c q),   grad L_c(q) = c grad L(c q).

The training problem is the same (at ``q = p / c`` every loss is the base task's), but the stored
parameters are ``c`` times smaller and their gradients ``c`` times larger, and a step ``dq`` moves
the base parameters by ``c dq``: gradient descent of rate ``eta`` on ``L_c`` is gradient descent of
rate ``c^2 eta`` on ``L``; Adam, blind to the gradient's scale, takes steps ``c`` times as large on
``L``; a step relative to the parameters' scale (Adafactor's) is unchanged. An optimizer that does
not adapt its step to the parameters' scale thus meets tasks of other effective learning rates.

The default ``(1, 1)`` is off: the family is exactly the one without the setting (no draw, no
factor, the same ``task_params``).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from tasks.base import Task

OFF = (1.0, 1.0)
PARAM_SCALE = "param_scale"  # The factor's name in task_params.
_SCALE_STREAM = 0x5CA1E  # Folded into the family's key, so the family's own draws stay the same.


def check_range(param_scale_range: Any) -> None:
  """Raises ``ValueError`` unless ``param_scale_range`` is ``(low, high)``, ``0 < low <= high``."""
  try:
    low, high = param_scale_range
    valid = 0.0 < low <= high
  except (TypeError, ValueError):
    valid = False
  if not valid:
    raise ValueError(f"param_scale_range must be (low, high) with 0 < low <= high (factors are "
                     f"log-uniform in [low, high]; (1.0, 1.0) is off), got {param_scale_range!r}")


def sample_scale(key: jax.Array, param_scale_range: tuple[float, float]) -> jax.Array:
  """``c = low (high / low)^u`` for ``u`` uniform in [0, 1): log-uniform in ``[low, high]``."""
  low, high = param_scale_range
  u = jax.random.uniform(jax.random.fold_in(key, _SCALE_STREAM))
  return low * jnp.exp(u * jnp.log(high / low))


@dataclasses.dataclass(frozen=True)
class ParamScaledTask:
  """``task`` with its parameters stored divided by ``scale``; see the module docstring."""

  task: Task
  scale: jax.Array

  def init(self, key: jax.Array):
    return jax.tree.map(lambda p: (p / self.scale).astype(p.dtype), self.task.init(key))

  def loss(self, params, batch) -> jax.Array:
    return self.task.loss(self._base_params(params), batch)

  def batch(self, key: jax.Array, split: str):
    return self.task.batch(key, split)

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    return self.task.evaluate(self._base_params(params), split)

  def roles(self, params):
    return self.task.roles(params)

  def lr_multipliers(self, params):
    return self.task.lr_multipliers(params)

  def _base_params(self, params):
    """``c q``: the base task's parameters."""
    return jax.tree.map(lambda q: (q * self.scale).astype(q.dtype), params)


def param_scaled(family_type: type) -> type:
  """``family_type`` (a frozen dataclass task family with a ``__post_init__``, whose
  ``task_params`` are dicts) with the setting ``param_scale_range`` (keyword-only, default off);
  see the module docstring.

  Used as a class decorator, above ``@dataclasses.dataclass``: the class it returns subclasses
  ``family_type`` under the same name, and families derived from it inherit the setting.
  """
  @dataclasses.dataclass(frozen=True, kw_only=True)
  class ParamScaledFamily(family_type):
    param_scale_range: tuple[float, float] = OFF

    def __post_init__(self):
      check_range(self.param_scale_range)
      super().__post_init__()

    def sample(self, key: jax.Array) -> dict[str, jax.Array]:
      task_params = super().sample(key)
      if self.param_scale_range == OFF:
        return task_params
      return {**task_params, PARAM_SCALE: sample_scale(key, self.param_scale_range)}

    def task(self, task_params: dict, data: Any) -> Task:
      task = super().task(task_params, data)
      if self.param_scale_range == OFF:
        return task
      return ParamScaledTask(task, task_params[PARAM_SCALE])

  for attribute in ("__name__", "__qualname__", "__module__", "__doc__"):
    setattr(ParamScaledFamily, attribute, getattr(family_type, attribute))
  return ParamScaledFamily
