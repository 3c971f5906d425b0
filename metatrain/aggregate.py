"""Averaging per-task meta-gradient estimates over the population, leaving out diverged tasks.

With per-task estimates ``g_i`` (a pytree whose leaves have the population as axis 0) and a mask
``valid_i``, the meta-gradient is ``g = sum_i valid_i g_i / n`` with ``n = sum_i valid_i``, and the
variance of that estimate, summed over the coordinates of theta, is estimated by
``sum_coords Var_i(g_i) / n``. Masks use ``where`` (never a product), so a non-finite ``g_i`` of a
diverged task cannot leak into the average. Under a sharded population these sums are the
cross-device reductions.
"""

import jax
import jax.numpy as jnp


def _broadcast(valid: jax.Array, x: jax.Array) -> jax.Array:
  return valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))


def select(mask: jax.Array, on_true, on_false):
  """Per task (axis 0), the pytree ``on_true`` where ``mask`` holds and ``on_false`` elsewhere."""
  return jax.tree.map(lambda a, b: jnp.where(_broadcast(mask, a), a, b), on_true, on_false)


def num_valid(valid: jax.Array) -> jax.Array:
  return jnp.maximum(jnp.sum(valid), 1)


def masked_mean(per_task, valid: jax.Array):
  """The mean over axis 0 of the tasks where ``valid`` holds (zero if none does)."""
  n = num_valid(valid)
  zeros = jax.tree.map(jnp.zeros_like, per_task)
  return jax.tree.map(lambda x: jnp.sum(x, axis=0) / n, select(valid, per_task, zeros))


def variance_of_mean(per_task, valid: jax.Array) -> jax.Array:
  """The estimated variance of ``masked_mean``, summed over all coordinates."""
  mean = masked_mean(per_task, valid)
  n = num_valid(valid)
  squares = jax.tree.map(lambda x, m: jnp.square(x - m), per_task, mean)
  squares = select(valid, squares, jax.tree.map(jnp.zeros_like, squares))
  total = sum(jnp.sum(s) for s in jax.tree.leaves(squares))
  return total / jnp.maximum(n - 1, 1) / n


def estimate_metrics(meta_losses: jax.Array, valid: jax.Array, per_task) -> dict[str, jax.Array]:
  """Metrics every estimator logs: ``meta_losses`` has the population as axis 0."""
  per_task_loss = jnp.mean(meta_losses.reshape(valid.shape[0], -1), axis=1)
  return {"meta_loss": jnp.sum(jnp.where(valid, per_task_loss, 0)) / num_valid(valid),
          "diverged_fraction": 1.0 - jnp.mean(valid.astype(jnp.float32)),
          "grad_variance": variance_of_mean(per_task, valid)}
