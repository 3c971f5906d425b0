"""Antithetic truncated evolution strategies over a population of inner trainings.

Per outer step, task ``i`` draws ``eps_i`` and runs its next unroll twice from the same state, with
``theta + eps_i`` and ``theta - eps_i``; the antithetic estimate of ``metatrain.es`` (with its
``shaping``) averages over the tasks that did not diverge. The state entering an unroll is held
fixed, so the estimate is biased towards short-horizon behaviour (the known bias of truncated ES);
the positive trajectory's state is carried to the next unroll.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metatrain import es
from metatrain.aggregate import estimate_metrics, masked_mean
from metatrain.inner_training import InnerTraining
from metatrain.unroll import InnerState
from tasks import Data

@dataclasses.dataclass(frozen=True)
class TruncatedES:
  """The antithetic truncated ES gradient estimator; see the module docstring."""

  inner: InnerTraining
  population: int
  sigma: float
  shaping: str = "none"

  def init(self, theta, data: Data, key: jax.Array) -> InnerState:
    return self.inner.start(theta, data, key, self.population)

  def grad(self, theta, data: Data, state: InnerState, key: jax.Array
           ) -> tuple[Any, InnerState, dict]:
    reset_key, eps_key = jax.random.split(key)
    state = self.inner.reset_finished(theta, data, state, reset_key)
    eps = es.sample_perturbations(eps_key, theta, self.population, self.sigma)

    def antithetic_pair(eps_i, state_i):
      return jax.vmap(lambda sign: self.inner.meta_loss_of_unroll(
          es.perturb(theta, eps_i, sign), data, state_i))(es.SIGNS)

    losses, end_states, diverged = jax.vmap(antithetic_pair)(eps, state)
    valid = ~jnp.any(diverged, axis=1)
    per_task = es.per_task_estimates(eps, losses[:, 0], losses[:, 1], self.sigma, valid,
                                     self.shaping)
    next_state = self.inner.mark_finished(jax.tree.map(lambda s: s[:, 0], end_states), ~valid)
    metrics = estimate_metrics(losses, valid, per_task)
    metrics["mean_inner_step"] = jnp.mean(state.step.astype(jnp.float32))
    return masked_mean(per_task, valid), next_state, metrics
