"""Choosing theta on validation tasks during meta-training.

Meta-gradient estimates are noisy, and so is theta from one outer step to the next: the learned
optimizer at the last outer step is often not the best one the run passed through. With
``config.eval.validate_every = k > 0``, every ``k`` outer steps theta trains
``config.eval.validation_seeds`` fresh tasks of every member family of the meta-training
distribution for the whole horizon, exactly as users run it (``lopt.as_optax``), and is scored by

    s(theta) = mean over members m and tasks i of log L_{m,i}(theta),

``L_{m,i}`` being the task's training loss on its whole training split after the training: the
log of the geometric mean of the final losses, so that a relative improvement counts alike on
every member, whatever its loss scale. A training that diverged scores ``+inf``. The run keeps the
theta of the lowest score seen (``Best``, saved in every checkpoint) and the experiment exports it.

The validation tasks are drawn from their own seeds (``validation_keys``), apart from the
meta-training tasks and from the evaluation's held-out tasks, so that the reported evaluation is
not the one the choice was made on.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt import LearnedOptimizer, as_optax
from metatrain.unroll import train_one
from tasks import Data, TaskFamily, family_roles

VALIDATION_SEED_OFFSET = 2_000_003  # Apart from meta-training's and evaluation's seeds.


class Best(NamedTuple):
  """The theta with the lowest validation score so far (a copy, laid out as theta), its score and
  its outer step (host scalars)."""
  theta: Any
  score: np.ndarray
  step: np.ndarray

  @classmethod
  def of(cls, theta, score: float, step: int) -> "Best":
    return cls(jax.tree.map(jnp.copy, theta), np.asarray(score, np.float32),
               np.asarray(step, np.int32))

  @classmethod
  def none_yet(cls, theta) -> "Best":
    """No theta validated yet: a score of ``+inf`` that the first validation replaces."""
    return cls.of(theta, np.inf, 0)


def validation_keys(seed: int, num_seeds: int) -> jax.Array:
  return jax.random.split(jax.random.PRNGKey(VALIDATION_SEED_OFFSET + seed), num_seeds)


def is_validation_step(step: int, every: int) -> bool:
  """Steps that are multiples of ``every`` only (not the last step of a run, which another run
  resumed from the same checkpoint with more outer steps would pass without validating)."""
  return every > 0 and step % every == 0


class Validator:
  """Scores theta on fixed validation tasks of each member family; see the module docstring."""

  def __init__(self, lopt: LearnedOptimizer, members: list[TaskFamily], horizon: int,
               keys: jax.Array):
    roles = [family_roles(family) for family in members]

    def score(theta, data: tuple[Data, ...]) -> jax.Array:
      log_losses = []
      for family, member_roles, member_data in zip(members, roles, data):
        tx = as_optax(lopt, theta, horizon, member_roles)
        final = jax.vmap(lambda k: train_one(family, member_data, tx, k, horizon))(keys)
        log_losses.append(jnp.log(final["train_loss"]))
      mean = jnp.mean(jnp.stack(log_losses))
      return jnp.where(jnp.isfinite(mean), mean, jnp.inf)

    self._score = jax.jit(score)

  def score(self, theta, data: tuple[Data, ...]) -> float:
    """``s(theta)`` on the members' ``data`` (each member's ``family.data()``, in order)."""
    return float(self._score(theta, data))

  def update(self, best: Best, theta, data: tuple[Data, ...], step: int) -> tuple[Best, float]:
    """Scores ``theta`` (at outer ``step``); returns the new best and the score."""
    score = self.score(theta, data)
    return (Best.of(theta, score, step) if score < best.score else best), score
