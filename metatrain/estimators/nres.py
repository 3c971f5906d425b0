"""Noise-Reuse evolution strategies (Li, Wu, Metz and Finn, ICML 2023).

Each task draws one perturbation ``eps_i ~ N(0, sigma^2 I)`` when its inner training starts and
reuses it for every unroll of that training: it keeps two inner trainings (``antithetic_pairs``),
driven by ``theta + eps_i`` and ``theta - eps_i`` throughout, and per unroll ``k`` contributes

    (M_ik^+ - M_ik^-) / (2 sigma^2) * eps_i

(or its ``shaping``, ``metatrain.es``). Each unroll's estimate is unbiased for the gradient of
that unroll's smoothed meta-loss as a function of the theta that has driven the training since its
start (the state's dependence on earlier unrolls, which truncated ES cuts, included), so that over
a training they sum to the gradient of the whole training's, as PES's do; but nothing accumulates,
so the variance does not grow with the number of unrolls since the reset. When a training
reaches the horizon (or diverges) both trajectories restart from one fresh task with a new
``eps_i``.
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


class NRESState(NamedTuple):
  """Per task: the antithetic trajectories (stacked on axis 1: +, -) and the perturbation that
  drives them since their training started."""
  trajectories: InnerState
  perturbations: Any


@dataclasses.dataclass(frozen=True)
class NRES:
  """The Noise-Reuse ES gradient estimator; see the module docstring."""

  inner: InnerTraining
  population: int
  sigma: float
  shaping: str = "none"

  def init(self, theta, data: Data, key: jax.Array) -> NRESState:
    start_key, eps_key = jax.random.split(key)
    return NRESState(
        trajectories=antithetic_pairs.start(self.inner, theta, data, start_key, self.population),
        perturbations=es.sample_perturbations(eps_key, theta, self.population, self.sigma))

  def grad(self, theta, data: Data, state: NRESState, key: jax.Array
           ) -> tuple[Any, NRESState, dict]:
    reset_key, eps_key = jax.random.split(key)
    trajectories, restarted = antithetic_pairs.reset_finished(self.inner, theta, data,
                                                              state.trajectories, reset_key)
    eps = select(restarted, es.sample_perturbations(eps_key, theta, self.population, self.sigma),
                 state.perturbations)
    losses, next_trajectories, valid = antithetic_pairs.unroll(self.inner, theta, data, eps,
                                                               trajectories)
    per_task = es.per_task_estimates(eps, losses[:, 0], losses[:, 1], self.sigma, valid,
                                     self.shaping)
    metrics = estimate_metrics(losses, valid, per_task)
    metrics["mean_inner_step"] = jnp.mean(trajectories.step.astype(jnp.float32))
    return masked_mean(per_task, valid), NRESState(next_trajectories, eps), metrics
