"""The interfaces of the task layer.

A ``Task`` is one training problem; a ``TaskFamily`` is a distribution over tasks of one shape.
``TaskFamily.sample(key)`` returns ``task_params``, a pytree of arrays, so that a population of tasks
is a leading array axis that ``vmap`` maps. ``TaskFamily.data()`` returns ``data``, the datasets all
its tasks read: a pytree of device arrays (``{}`` for a family without data), put on the device once
per process. ``TaskFamily.task(task_params, data)`` builds the task from both (inside traced code it
closes over the traced arguments). Task and family objects hold static configuration only; batches
are drawn on device from a key, so an inner training loop has no Python in it.

Code that ``jit``s a task takes ``data`` as an argument of the jitted function (not ``vmap``-ed: the
population shares it) and passes it on. A concrete array that traced code closes over is lowered
into the compiled program as a constant: the whole dataset would then be copied into every program,
costing seconds of compilation and its size in memory each time.
"""

import functools
from typing import Any, Callable, Protocol

import jax

Params = Any
Batch = Any
TaskParams = Any
Data = Any

ROLES = ("input", "hidden", "output", "vector")
SPLITS = ("train", "test")


def on_device(read: Callable[..., Any]) -> Callable[..., Data]:
  """``read`` (arguments -> host arrays) made to return its arrays on the default device, read and
  put there once per process and arguments."""
  @functools.lru_cache(maxsize=None)
  def put(*args):
    with jax.ensure_compile_time_eval():  # Concrete arrays, even if first called while tracing.
      return jax.device_put(read(*args))
  return put


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

  def data(self) -> Data:
    """The device arrays every task of the family reads (``{}`` if none), the same each call."""

  def task(self, task_params: TaskParams, data: Data) -> Task:
    """Returns the task that ``task_params`` picks, reading ``data`` (``self.data()`` or its
    traced value)."""


def family_roles(family: TaskFamily) -> Any:
  """The parameter roles (``Task.roles``) of ``family``'s tasks, the same for every task of a
  family, which role-aware learned optimizers (μLO) read; worked out on shapes alone."""
  data = family.data()

  def abstract_task(key):
    task_params = family.sample(key)
    return task_params, family.task(task_params, data).init(key)
  task_params, params = jax.eval_shape(abstract_task, jax.random.PRNGKey(0))
  return family.task(task_params, data).roles(params)
