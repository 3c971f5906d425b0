"""Antithetic pairs of inner trainings that persist from one unroll to the next (PES, NRES).

Task ``i`` of the population keeps two inner trainings of the same task, stacked on axis 1: one
driven by ``theta + eps_i`` and one by ``theta - eps_i``, for the perturbation ``eps_i`` its
estimator gives each unroll. Both start from one fresh task; when either reaches its horizon or
diverges (an unroll that diverges is marked finished), the pair restarts from one fresh task.
"""

import jax
import jax.numpy as jnp

from metatrain import es
from metatrain.aggregate import select
from metatrain.inner_training import InnerTraining
from metatrain.unroll import InnerState, finished
from tasks import Data


def _as_pairs(states: InnerState) -> InnerState:
  return jax.tree.map(lambda s: jnp.stack([s, s], axis=1), states)


def start(inner: InnerTraining, theta, data: Data, key: jax.Array, population: int) -> InnerState:
  """``population`` pairs, staggered over their trainings as ``InnerTraining.start`` does."""
  return _as_pairs(inner.start(theta, data, key, population))


def reset_finished(inner: InnerTraining, theta, data: Data, pairs: InnerState, key: jax.Array
                   ) -> tuple[InnerState, jax.Array]:
  """Restarts the pairs of which a training is finished; returns them and which restarted."""
  fresh = jax.vmap(lambda k: inner.fresh(theta, data, k))(
      jax.random.split(key, pairs.step.shape[0]))
  restarted = jnp.any(finished(pairs), axis=1)
  return select(restarted, _as_pairs(fresh), pairs), restarted


def unroll(inner: InnerTraining, theta, data: Data, perturbations, pairs: InnerState
           ) -> tuple[jax.Array, InnerState, jax.Array]:
  """Advances each pair one unroll with ``theta +- perturbations[i]``; returns the meta-losses
  (population x 2: +, -), the next pairs (diverged ones marked finished) and which pairs did not
  diverge."""

  def antithetic_pair(eps_i, pair_i):
    return jax.vmap(lambda sign, state_i: inner.meta_loss_of_unroll(
        es.perturb(theta, eps_i, sign), data, state_i))(es.SIGNS, pair_i)

  losses, next_pairs, diverged = jax.vmap(antithetic_pair)(perturbations, pairs)
  valid = ~jnp.any(diverged, axis=1)
  return losses, inner.mark_finished(next_pairs, ~valid[:, None]), valid
