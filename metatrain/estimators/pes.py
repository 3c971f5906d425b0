"""Persistent evolution strategies (Vicol, Metz and Sohl-Dickstein, ICML 2021).

Each task keeps two inner trainings, one driven by ``theta + perturbation`` and one by
``theta - perturbation``, and ``xi_i``, the sum of all perturbations it has drawn since its inner
training began. Per unroll it draws ``eps_i``, sets ``xi_i += eps_i``, advances both trainings with
``theta +- eps_i``, and contributes

    (M_i^+ - M_i^-) / (2 sigma^2) * xi_i.

Because ``xi_i`` carries the perturbations of the earlier unrolls, whose effect persists in the
inner states, the estimate is unbiased for the gradient of the smoothed meta-loss of the whole
inner training, where truncated ES is not; its variance grows with the number of unrolls since the
reset. When a training reaches the horizon (or diverges) both trajectories restart from one fresh
task and ``xi_i`` restarts from zero.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metatrain import es
from metatrain.aggregate import estimate_metrics, masked_mean, select
from metatrain.inner_training import InnerTraining
from metatrain.unroll import InnerState, finished
from tasks import Data


class PESState(NamedTuple):
  """Per task: the antithetic trajectories (stacked on axis 1: +, -) and the accumulated xi."""
  trajectories: InnerState
  accumulated: Any


@dataclasses.dataclass(frozen=True)
class PES:
  """The Persistent ES gradient estimator; see the module docstring."""

  inner: InnerTraining
  population: int
  sigma: float

  def init(self, theta, data: Data, key: jax.Array) -> PESState:
    states = self.inner.start(theta, data, key, self.population)
    return PESState(trajectories=jax.tree.map(lambda s: jnp.stack([s, s], axis=1), states),
                    accumulated=jax.tree.map(
                        lambda t: jnp.zeros((self.population,) + t.shape, t.dtype), theta))

  def _reset_finished(self, theta, data: Data, state: PESState, key: jax.Array) -> PESState:
    keys = jax.random.split(key, self.population)
    fresh = jax.vmap(lambda k: self.inner.fresh(theta, data, k))(keys)
    fresh_pair = jax.tree.map(lambda s: jnp.stack([s, s], axis=1), fresh)
    done = jnp.any(finished(state.trajectories), axis=1)
    zeros = jax.tree.map(jnp.zeros_like, state.accumulated)
    return PESState(select(done, fresh_pair, state.trajectories),
                    select(done, zeros, state.accumulated))

  def grad(self, theta, data: Data, state: PESState, key: jax.Array
           ) -> tuple[Any, PESState, dict]:
    reset_key, eps_key = jax.random.split(key)
    state = self._reset_finished(theta, data, state, reset_key)
    eps = es.sample_perturbations(eps_key, theta, self.population, self.sigma)
    accumulated = jax.tree.map(jnp.add, state.accumulated, eps)

    def antithetic_pair(eps_i, pair_i):
      return jax.vmap(lambda sign, state_i: self.inner.meta_loss_of_unroll(
          es.perturb(theta, eps_i, sign), data, state_i))(es.SIGNS, pair_i)

    losses, trajectories, diverged = jax.vmap(antithetic_pair)(eps, state.trajectories)
    valid = ~jnp.any(diverged, axis=1)
    per_task = es.per_task_estimates(accumulated, losses[:, 0], losses[:, 1], self.sigma)
    next_state = PESState(self.inner.mark_finished(trajectories, ~valid[:, None]), accumulated)
    metrics = estimate_metrics(losses, valid, per_task)
    metrics["mean_inner_step"] = jnp.mean(state.trajectories.step.astype(jnp.float32))
    return masked_mean(per_task, valid), next_state, metrics
