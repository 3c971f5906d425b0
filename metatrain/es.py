"""Antithetic evolution strategies: the shared maths of the ES gradient estimators.

For a meta-loss ``M`` and perturbations ``eps_i ~ N(0, sigma^2 I)``, i = 1..N,

    g = 1 / (2 N sigma^2) * sum_i (M(theta + eps_i) - M(theta - eps_i)) * eps_i

is an unbiased estimate of the gradient of the Gaussian-smoothed meta-loss
``E_eps[M(theta + eps)]`` (Salimans et al., 2017; the antithetic pair cancels the even part of
``M`` around ``theta``, which lowers the variance).
"""

import jax
import jax.numpy as jnp


def sample_perturbations(key: jax.Array, theta, num: int, sigma: float):
  """Draws ``num`` perturbations ``eps ~ N(0, sigma^2 I)`` shaped like ``theta``, stacked on axis 0."""
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([sigma * jax.random.normal(k, (num,) + jnp.shape(leaf))
                            for k, leaf in zip(keys, leaves)])


def antithetic_gradient(eps, loss_pos: jax.Array, loss_neg: jax.Array, sigma: float):
  """The antithetic ES estimate above from ``eps`` (axis 0: samples) and the losses at theta +- eps."""
  weights = (loss_pos - loss_neg) / (2.0 * sigma**2 * loss_pos.shape[0])
  return jax.tree.map(lambda e: jnp.tensordot(weights, e, axes=1), eps)
