"""Antithetic truncated evolution strategies over a population of inner trainings.

Each of the ``population`` tasks holds one inner training. Per outer step, task ``i`` draws
``eps_i`` and runs its next unroll of ``unroll_length`` steps twice from the same state, with
``theta + eps_i`` and ``theta - eps_i``; the meta-loss of an unroll is the mean training loss over it
(non-finite or larger losses clipped to ``loss_clip``). The gradient is the antithetic estimate of
``metatrain.es``. The state entering an unroll is held fixed, so the estimate is biased towards
short-horizon behaviour (the known bias of truncated ES); the positive trajectory's state is carried
to the next unroll. Inner trainings start staggered at random multiples of ``unroll_length`` so that
every window of the horizon is represented, and restart when they reach ``horizon`` steps.
The whole population is one ``vmap`` of ``2 * population`` unrolls.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from lopt import LearnedOptimizer, as_optax
from metatrain import es
from metatrain.unroll import InnerState, init_inner_state, reset_finished, unroll
from tasks import TaskFamily


def clipped_mean_loss(losses: jax.Array, loss_clip: float) -> jax.Array:
  """Mean of ``losses`` with each loss clipped to ``loss_clip`` and non-finite ones set to it."""
  return jnp.mean(jnp.where(jnp.isfinite(losses), jnp.minimum(losses, loss_clip), loss_clip))


@dataclasses.dataclass(frozen=True)
class TruncatedES:
  """The antithetic truncated ES gradient estimator; see the module docstring."""

  family: TaskFamily
  lopt: LearnedOptimizer
  population: int
  unroll_length: int
  horizon: int
  sigma: float
  loss_clip: float

  def _optax(self, theta):
    return as_optax(self.lopt, theta, self.horizon)

  def init(self, theta, key: jax.Array) -> InnerState:
    """Starts the population's inner trainings, staggered over the horizon."""
    init_key, offset_key = jax.random.split(key)
    keys = jax.random.split(init_key, self.population)
    states = jax.vmap(lambda k: init_inner_state(self.family, self._optax(theta), k))(keys)
    num_windows = self.horizon // self.unroll_length
    offsets = self.unroll_length * jax.random.randint(offset_key, (self.population,), 0, num_windows)
    return states._replace(step=offsets.astype(jnp.int32))

  def grad(self, theta, state: InnerState, key: jax.Array) -> tuple[Any, InnerState, dict]:
    """Returns the meta-gradient estimate, the advanced population and metrics."""
    reset_key, eps_key = jax.random.split(key)
    reset = lambda s, k: reset_finished(self.family, self._optax(theta), s, k, self.horizon)
    state = jax.vmap(reset)(state, jax.random.split(reset_key, self.population))
    eps = es.sample_perturbations(eps_key, theta, self.population, self.sigma)
    # One vmap over the 2N antithetic unrolls: thetas [theta + eps; theta - eps], states twice.
    thetas = jax.tree.map(lambda t, e: jnp.concatenate([t + e, t - e]), theta, eps)
    states = jax.tree.map(lambda s: jnp.concatenate([s, s]), state)

    def meta_loss(theta_i, state_i):
      state_i, losses = unroll(self.family, self._optax(theta_i), state_i, self.unroll_length)
      return clipped_mean_loss(losses, self.loss_clip), state_i

    losses, end_states = jax.vmap(meta_loss)(thetas, states)
    loss_pos, loss_neg = losses[:self.population], losses[self.population:]
    grad = es.antithetic_gradient(eps, loss_pos, loss_neg, self.sigma)
    next_state = jax.tree.map(lambda s: s[:self.population], end_states)
    metrics = {"meta_loss": jnp.mean(losses),
               "loss_difference_std": jnp.std(loss_pos - loss_neg),
               "mean_inner_step": jnp.mean(state.step.astype(jnp.float32))}
    return grad, next_state, metrics
