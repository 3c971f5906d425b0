"""What every gradient estimator shares: how the population's tasks are trained and scored.

``InnerTraining`` trains one task with the learned optimizer at some ``theta`` (exported with
``lopt.as_optax``, so meta-training trains exactly what users get) and turns an unroll into a
meta-loss:

- ``meta_loss="train"``: the mean training loss over the unroll's steps;
- ``meta_loss="held_out"``: the mean loss over the unroll of the same parameters on batches of the
  held-out split (what generalisation asks of an optimizer).

Each loss is clipped to ``loss_clip``. An unroll whose losses or parameters are not finite has
*diverged*: estimators drop it from their estimate, count it, and have it restarted (its step is set
to the horizon, so ``reset_finished`` replaces it by a fresh task before the next unroll).
The population starts staggered at random multiples of ``unroll_length`` so that every window of the
horizon is represented in every outer step.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lopt import LearnedOptimizer, as_optax
from metatrain.unroll import InnerState, init_inner_state, reset_finished, unroll
from tasks import TaskFamily

META_LOSSES = ("train", "held_out")


def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@dataclasses.dataclass(frozen=True)
class InnerTraining:
  """How the population's tasks are trained and scored; see the module docstring."""

  family: TaskFamily
  lopt: LearnedOptimizer
  unroll_length: int
  horizon: int
  loss_clip: float
  meta_loss: str = "train"

  def __post_init__(self):
    if self.meta_loss not in META_LOSSES:
      raise ValueError(f"unknown meta_loss '{self.meta_loss}'; valid choices: {list(META_LOSSES)}")

  def optimizer(self, theta) -> optax.GradientTransformationExtraArgs:
    return as_optax(self.lopt, theta, self.horizon)

  def start(self, theta, key: jax.Array, population: int) -> InnerState:
    """Starts ``population`` inner trainings at random multiples of ``unroll_length`` steps."""
    init_key, offset_key = jax.random.split(key)
    keys = jax.random.split(init_key, population)
    states = jax.vmap(lambda k: init_inner_state(self.family, self.optimizer(theta), k))(keys)
    num_windows = self.horizon // self.unroll_length
    offsets = self.unroll_length * jax.random.randint(offset_key, (population,), 0, num_windows)
    return states._replace(step=offsets.astype(jnp.int32))

  def reset_finished(self, theta, states: InnerState, key: jax.Array) -> InnerState:
    """Restarts (with fresh tasks) the inner trainings that reached the horizon."""
    keys = jax.random.split(key, states.step.shape[0])
    reset = lambda s, k: reset_finished(self.family, self.optimizer(theta), s, k, self.horizon)
    return jax.vmap(reset)(states, keys)

  def fresh(self, theta, key: jax.Array) -> InnerState:
    """One new inner training at step 0."""
    return init_inner_state(self.family, self.optimizer(theta), key)

  def meta_loss_of_unroll(self, theta, state: InnerState, num_steps: int | None = None,
                          remat: bool = False) -> tuple[jax.Array, InnerState, jax.Array]:
    """Unrolls one task; returns ``(meta_loss, next_state, diverged)``.

    A diverged unroll gets meta-loss ``loss_clip`` and a next state marked as finished.
    """
    num_steps = self.unroll_length if num_steps is None else num_steps
    state, losses = unroll(self.family, self.optimizer(theta), state, num_steps,
                           held_out=self.meta_loss == "held_out", remat=remat)
    scored = losses[self.meta_loss]
    diverged = ~(all_finite(losses) & all_finite(state.params))
    meta_loss = jnp.where(diverged, self.loss_clip, jnp.mean(jnp.minimum(scored, self.loss_clip)))
    state = state._replace(step=jnp.where(diverged, self.horizon, state.step))
    return meta_loss, state, diverged
