"""Antithetic evolution strategies: the shared maths of the ES gradient estimators.

For a meta-loss ``M`` and perturbations ``eps_i ~ N(0, sigma^2 I)``, i = 1..N,

    g = 1 / (2 N sigma^2) * sum_i (M(theta + eps_i) - M(theta - eps_i)) * eps_i

is an unbiased estimate of the gradient of the Gaussian-smoothed meta-loss
``E_eps[M(theta + eps)]`` (Salimans et al., 2017; the antithetic pair cancels the even part of
``M`` around ``theta``, which lowers the variance). Persistent ES uses the same formula with the
perturbations accumulated since the inner training began in place of ``eps_i``.

``shaping`` replaces each pair's weight ``(M_i^+ - M_i^-) / (2 sigma^2)`` by a robust function of
the losses (``pair_weights``): ``sign`` keeps only the sign of the pair's difference (as VeLO's
estimator and learned_optimization's ``sign_delta_loss_scalar`` do), ``centered_rank`` the
difference of the pair's centred ranks among all the population's losses (as evosax's
``centered_rank`` fitness shaping does). Both are unchanged by rescaling the losses, ranks by any
increasing transformation of them, so that a heavy-tailed loss difference cannot dominate a step.
"""

import jax
import jax.numpy as jnp
import numpy as np

from metatrain.aggregate import masked_mean

SIGNS = np.array([1.0, -1.0], np.float32)  # The two members of an antithetic pair: theta + eps, theta - eps.
SHAPINGS = ("none", "sign", "centered_rank")


def perturb(theta, eps, sign):
  """``theta + sign * eps``."""
  return jax.tree.map(lambda t, e: t + sign * e, theta, eps)


def sample_perturbations(key: jax.Array, theta, num: int, sigma: float):
  """Draws ``num`` perturbations ``eps ~ N(0, sigma^2 I)`` shaped like ``theta``, stacked on axis 0."""
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([sigma * jax.random.normal(k, (num,) + jnp.shape(leaf))
                            for k, leaf in zip(keys, leaves)])


def centered_ranks(losses: jax.Array, valid: jax.Array) -> jax.Array:
  """The ranks of ``losses`` (any shape, with ``valid`` broadcast to it) among the valid ones,
  mapped linearly onto [-1/2, 1/2]: ``rank / (n - 1) - 1/2`` for the ``n`` valid losses, ranked
  from 0 (the smallest). Tied losses share their mean rank; invalid entries get 0 and take no
  part in the ranking. Valid losses must be finite."""
  valid = jnp.broadcast_to(valid, losses.shape)
  ordered = jnp.sort(jnp.where(valid, losses, jnp.inf).ravel())
  below = jnp.searchsorted(ordered, losses.ravel(), side="left")
  at_or_below = jnp.searchsorted(ordered, losses.ravel(), side="right")
  ranks = ((below + at_or_below - 1) / 2).reshape(losses.shape)
  n = jnp.sum(valid)
  return jnp.where(valid, ranks / jnp.maximum(n - 1, 1) - 0.5, 0.0)


def pair_weights(loss_pos: jax.Array, loss_neg: jax.Array, sigma: float, valid: jax.Array,
                 shaping: str = "none") -> jax.Array:
  """The weight ``w_i`` of each pair's direction ``d_i`` in its estimate ``w_i d_i``.

  With ``M_i^+-`` the pair's losses and ``valid`` the pairs that did not diverge (the weights of
  the others mean nothing: ``masked_mean`` leaves them out):

  - ``none``: ``w_i = (M_i^+ - M_i^-) / (2 sigma^2)``, the unbiased estimate above;
  - ``sign``: ``w_i = sqrt(pi / 2) sign(M_i^+ - M_i^-) / sigma``;
  - ``centered_rank``: ``w_i = sqrt(pi) (r_i^+ - r_i^-) / sigma``, with ``r`` the centred ranks of
    all valid 2N losses together (``centered_ranks``).

  The scales make both shaped estimates, for a meta-loss linear around theta (``M(theta + eps) =
  M + g . eps``) and ``d_i = eps_i = sigma z_i``, estimates of the unit vector ``g / |g|``: for
  ``sign``, ``E[sign(g . z) z] = sqrt(2 / pi) g / |g|``; for ranks, with many pairs of the same
  base loss ``r^+- = +-(Phi(u) - 1/2)`` for ``u = g . z / |g| ~ N(0, 1)``, and
  ``E[(2 Phi(u) - 1) u] = 2 E[phi(u)] = 1 / sqrt(pi)``. They estimate a direction, not the
  gradient's length (the meta-optimizer's learning rate sets the step). When the pairs' base
  losses differ by much more than a pair's difference (tasks at different steps of training), a
  pair's two ranks are neighbours and the rank estimate is ``sign``'s times ``sqrt(2) / (2N - 1)``
  (Adam's steps hardly depend on such a constant scale of the meta-gradient).
  """
  if shaping == "none":
    return (loss_pos - loss_neg) / (2.0 * sigma**2)
  if shaping == "sign":
    return np.sqrt(np.pi / 2) * jnp.sign(loss_pos - loss_neg) / sigma
  if shaping == "centered_rank":
    ranks = centered_ranks(jnp.stack([loss_pos, loss_neg], axis=-1), valid[..., None])
    return np.sqrt(np.pi) * (ranks[..., 0] - ranks[..., 1]) / sigma
  raise ValueError(f"unknown shaping '{shaping}'; valid choices: {list(SHAPINGS)}")


def per_task_estimates(directions, loss_pos: jax.Array, loss_neg: jax.Array, sigma: float,
                       valid: jax.Array, shaping: str = "none"):
  """``w_i * d_i`` for every task ``i`` (axis 0 of ``directions``), with the weights
  ``pair_weights`` (``(M_i^+ - M_i^-) / (2 sigma^2)`` unshaped)."""
  weights = pair_weights(loss_pos, loss_neg, sigma, valid, shaping)
  return jax.tree.map(lambda d: weights.reshape((-1,) + (1,) * (d.ndim - 1)) * d, directions)


def antithetic_gradient(directions, loss_pos: jax.Array, loss_neg: jax.Array, sigma: float,
                        valid: jax.Array | None = None, shaping: str = "none"):
  """The antithetic ES estimate above, averaged over the tasks where ``valid`` holds."""
  if valid is None:
    valid = jnp.ones(loss_pos.shape, bool)
  return masked_mean(per_task_estimates(directions, loss_pos, loss_neg, sigma, valid, shaping),
                     valid)
