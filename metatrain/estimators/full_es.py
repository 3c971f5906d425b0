"""Full-horizon antithetic evolution strategies.

Each of the ``population`` samples is a whole inner training of ``horizon`` steps of a fresh task,
run with ``theta + eps_i`` and with ``theta - eps_i`` from the same start; the meta-loss is the mean
over the whole training, and the estimate the antithetic one of ``metatrain.es`` (with its
``shaping``). Unbiased for the smoothed meta-loss of the whole training, with no state carried
between outer steps, at the price of a whole training per sample (VeLO's outer estimator). The
state only counts the inner trainings run so far.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metatrain import es
from metatrain.aggregate import estimate_metrics, masked_mean
from metatrain.inner_training import InnerTraining
from tasks import Data


@dataclasses.dataclass(frozen=True)
class FullES:
  """The full-horizon ES gradient estimator; see the module docstring."""

  inner: InnerTraining
  population: int
  sigma: float
  shaping: str = "none"

  def init(self, theta, data: Data, key: jax.Array) -> dict[str, jax.Array]:
    del theta, data, key
    return {"inner_trainings": jnp.zeros((), jnp.int32)}

  def grad(self, theta, data: Data, state, key: jax.Array) -> tuple[Any, dict, dict]:
    task_key, eps_key = jax.random.split(key)
    eps = es.sample_perturbations(eps_key, theta, self.population, self.sigma)

    def antithetic_pair(eps_i, key_i):
      start = self.inner.fresh(theta, data, key_i)
      return jax.vmap(lambda sign: self.inner.meta_loss_of_unroll(
          es.perturb(theta, eps_i, sign), data, start, num_steps=self.inner.horizon))(es.SIGNS)

    losses, _, diverged = jax.vmap(antithetic_pair)(
        eps, jax.random.split(task_key, self.population))
    valid = ~jnp.any(diverged, axis=1)
    per_task = es.per_task_estimates(eps, losses[:, 0], losses[:, 1], self.sigma, valid,
                                     self.shaping)
    state = {"inner_trainings": state["inner_trainings"] + 2 * self.population}
    return masked_mean(per_task, valid), state, estimate_metrics(losses, valid, per_task)
