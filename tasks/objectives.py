"""Per-task normalisation of inner losses, so that meta-losses of tasks of different scales mix.

With ``L_t`` a task's loss during an unroll and ``L_0`` its loss at initialisation (measured once,
when the inner training starts, e.g. ``task.loss(params_0, task.batch(key, "train"))``):

- ``"none"``:         ``L_t``
- ``"relative"``:     ``L_t / L_0``           (1 at the start, 0 at a perfect fit)
- ``"log_relative"``: ``log(L_t / L_0)``      (0 at the start; progress counted in factors)

Non-finite or exploding normalised losses are then clipped to ``clip`` (learned_optimization clips
a NaN meta-loss to a fixed value in the same way).
"""

import jax
import jax.numpy as jnp

NORMALIZATIONS = ("none", "relative", "log_relative")
_TINY = 1e-12  # Keeps the log finite at a zero loss (a solved quadratic).


def check_normalization(kind: str) -> None:
  if kind not in NORMALIZATIONS:
    raise ValueError(f"unknown loss normalization '{kind}'; valid choices: {list(NORMALIZATIONS)}")


def normalize(losses: jax.Array, initial_loss: jax.Array, kind: str) -> jax.Array:
  """``losses`` normalised by the task's ``initial_loss`` as ``kind`` says (see module docstring)."""
  check_normalization(kind)
  if kind == "relative":
    return losses / initial_loss
  if kind == "log_relative":
    return jnp.log(jnp.maximum(losses, _TINY)) - jnp.log(jnp.maximum(initial_loss, _TINY))
  return losses


def clip(losses: jax.Array, clip_value: float) -> jax.Array:
  """``min(loss, clip_value)`` elementwise, with non-finite losses set to ``clip_value``."""
  return jnp.where(jnp.isfinite(losses), jnp.minimum(losses, clip_value), clip_value)
