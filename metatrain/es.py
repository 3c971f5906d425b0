"""Antithetic evolution strategies: the shared maths of the ES gradient estimators.

For a meta-loss ``M`` and perturbations ``eps_i ~ N(0, sigma^2 I)``, i = 1..N,

    g = 1 / (2 N sigma^2) * sum_i (M(theta + eps_i) - M(theta - eps_i)) * eps_i

is an unbiased estimate of the gradient of the Gaussian-smoothed meta-loss
``E_eps[M(theta + eps)]`` (Salimans et al., 2017; the antithetic pair cancels the even part of
``M`` around ``theta``, which lowers the variance). Persistent ES uses the same formula with the
perturbations accumulated since the inner training began in place of ``eps_i``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from metatrain.aggregate import masked_mean

SIGNS = np.array([1.0, -1.0], np.float32)  # The two members of an antithetic pair: theta + eps, theta - eps.


def perturb(theta, eps, sign):
  """``theta + sign * eps``."""
  return jax.tree.map(lambda t, e: t + sign * e, theta, eps)


def sample_perturbations(key: jax.Array, theta, num: int, sigma: float):
  """Draws ``num`` perturbations ``eps ~ N(0, sigma^2 I)`` shaped like ``theta``, stacked on axis 0."""
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([sigma * jax.random.normal(k, (num,) + jnp.shape(leaf))
                            for k, leaf in zip(keys, leaves)])


def per_task_estimates(directions, loss_pos: jax.Array, loss_neg: jax.Array, sigma: float):
  """``(M_i^+ - M_i^-) / (2 sigma^2) * d_i`` for every task ``i`` (axis 0 of ``directions``)."""
  scale = (loss_pos - loss_neg) / (2.0 * sigma**2)
  return jax.tree.map(lambda d: scale.reshape((-1,) + (1,) * (d.ndim - 1)) * d, directions)


def antithetic_gradient(directions, loss_pos: jax.Array, loss_neg: jax.Array, sigma: float,
                        valid: jax.Array | None = None):
  """The antithetic ES estimate above, averaged over the tasks where ``valid`` holds."""
  if valid is None:
    valid = jnp.ones(loss_pos.shape, bool)
  return masked_mean(per_task_estimates(directions, loss_pos, loss_neg, sigma), valid)
