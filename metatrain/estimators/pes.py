"""Persistent evolution strategies (Vicol, Metz and Sohl-Dickstein, ICML 2021).

Each task keeps two inner trainings, one driven by ``theta + perturbation`` and one by
``theta - perturbation`` (``antithetic_pairs``), and ``xi_i``, the sum of all perturbations it has
drawn since its inner training began. Per unroll it draws ``eps_i``, sets ``xi_i += eps_i``,
advances both trainings with ``theta +- eps_i``, and contributes

    (M_i^+ - M_i^-) / (2 sigma^2) * xi_i

(or its ``shaping``, ``metatrain.es``). Because ``xi_i`` carries the perturbations of the earlier
unrolls, whose effect persists in the inner states, the estimate is unbiased for the gradient of
the smoothed meta-loss of the whole inner training, where truncated ES is not; its variance grows
with the number of unrolls since the reset. When a training reaches the horizon (or diverges)
both trajectories restart from one fresh task and ``xi_i`` restarts from zero.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metatrain import es
from metatrain.aggregate import estimate_metrics, masked_mean, select
from metatrain.estimators import antithetic_pairs
from metatrain.inner_training import InnerTraining
from metatrain.unroll import InnerState
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
  shaping: str = "none"

  def init(self, theta, data: Data, key: jax.Array) -> PESState:
    return PESState(trajectories=antithetic_pairs.start(self.inner, theta, data, key,
                                                        self.population),
                    accumulated=jax.tree.map(
                        lambda t: jnp.zeros((self.population,) + t.shape, t.dtype), theta))

  def grad(self, theta, data: Data, state: PESState, key: jax.Array
           ) -> tuple[Any, PESState, dict]:
    reset_key, eps_key = jax.random.split(key)
    trajectories, restarted = antithetic_pairs.reset_finished(self.inner, theta, data,
                                                              state.trajectories, reset_key)
    zeros = jax.tree.map(jnp.zeros_like, state.accumulated)
    eps = es.sample_perturbations(eps_key, theta, self.population, self.sigma)
    accumulated = jax.tree.map(jnp.add, select(restarted, zeros, state.accumulated), eps)
    losses, next_trajectories, valid = antithetic_pairs.unroll(self.inner, theta, data, eps,
                                                               trajectories)
    per_task = es.per_task_estimates(accumulated, losses[:, 0], losses[:, 1], self.sigma, valid,
                                     self.shaping)
    metrics = estimate_metrics(losses, valid, per_task)
    metrics["mean_inner_step"] = jnp.mean(trajectories.step.astype(jnp.float32))
    return masked_mean(per_task, valid), PESState(next_trajectories, accumulated), metrics
