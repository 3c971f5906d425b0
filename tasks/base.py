"""The interfaces of the task layer.

A ``Task`` is one training problem; a ``TaskFamily`` is a distribution over tasks of one shape.
``TaskFamily.sample(key)`` returns ``task_params``, a pytree of arrays, so that a population of tasks
is a leading array axis that ``vmap`` maps; ``TaskFamily.task(task_params)`` builds the task from
them (inside traced code it may close over traced ``task_params``). Task and family objects hold
static configuration only; datasets are arrays held in memory and batches are drawn on device from
a key, so an inner training loop has no Python in it.
"""

from typing import Any, Protocol

import jax

Params = Any
Batch = Any
TaskParams = Any

ROLES = ("input", "hidden", "output", "vector")
SPLITS = ("train", "test")


class Task(Protocol):
  """One training problem."""

  def init(self, key: jax.Array) -> Params:
    """Returns initial parameters."""

  def loss(self, params: Params, batch: Batch) -> jax.Array:
    """Returns the scalar training loss on ``batch``."""

  def batch(self, key: jax.Array, split: str) -> Batch:
    """Draws a batch of ``split`` (one of ``SPLITS``) from ``key``, on device."""

  def evaluate(self, params: Params, split: str) -> dict[str, jax.Array]:
    """Returns metrics (at least ``loss``) on the whole of ``split``."""

  def roles(self, params: Params) -> Any:
    """Returns a pytree like ``params`` of role names from ``ROLES``."""


class TaskFamily(Protocol):
  """A distribution over tasks that share their shapes."""

  name: str

  def sample(self, key: jax.Array) -> TaskParams:
    """Draws the arrays that pick one task of the family."""

  def task(self, task_params: TaskParams) -> Task:
    """Returns the task that ``task_params`` picks."""
