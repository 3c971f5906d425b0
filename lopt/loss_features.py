"""Features of the training loss, normalised online, for learned optimizers that read it.

Losses of different tasks live on different scales, so each loss ``L_t`` is read relative to the first
finite loss ``L_0`` of the training,

    l_t = clip((L_t - L_0) / max(|L_0|, TINY), -CLIP, CLIP)

(0 at the start, -1 for a non-negative loss driven to 0, positive when training made things worse;
the clip keeps one spike from swamping the averages). For each decay ``beta_k`` the state keeps an
exponential moving average and its running minimum,

    e_k    <- beta_k e_k + (1 - beta_k) l_t
    best_k <- min(best_k, e_k),

both starting at 0, which is ``l_0``, so the averages need no bias correction. The features are

    [tanh(e_1)..tanh(e_L), tanh(RISE_SCALE (e_1 - best_1))..tanh(RISE_SCALE (e_L - best_L))]:

the progress made at several time scales, and how far each average has risen above its best (0 while
the loss keeps falling; a sign of too large steps or of overfitting). A missing loss (``None``) or a
non-finite one (NaN, inf) leaves the state unchanged, so an optimizer never fed a loss reads zeros.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Smallest |L_0| the relative loss divides by.
TINY = 1e-8
# Bound on the relative loss l_t.
CLIP = 10.0
# Gain of the rise-above-best features: a rise of 10% of |L_0| reads tanh(1).
RISE_SCALE = 10.0


class LossState(NamedTuple):
  """``reference``: ``L_0`` (0 until a finite loss is seen); ``count``: finite losses seen;
  ``ema`` and ``best``: ``e_k`` and ``best_k``, shape ``(L,)``."""
  reference: jax.Array
  count: jax.Array
  ema: jax.Array
  best: jax.Array


def init(num_decays: int) -> LossState:
  """The state before any loss."""
  zeros = jnp.zeros((num_decays,), jnp.float32)
  return LossState(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), zeros, zeros)


def update(state: LossState, loss: jax.Array | float | None, decays: Sequence[float]) -> LossState:
  """Folds ``loss`` into ``state`` (see the module docstring); ``None`` or non-finite: no change."""
  if loss is None:
    return state
  loss = jnp.asarray(loss, jnp.float32)
  finite = jnp.isfinite(loss)
  loss = jnp.where(finite, loss, 0.0)  # Keeps NaN out of the unselected branch and its gradient.
  reference = jnp.where(state.count == 0, loss, state.reference)
  relative = jnp.clip((loss - reference) / jnp.maximum(jnp.abs(reference), TINY), -CLIP, CLIP)
  betas = jnp.asarray(decays, jnp.float32)
  ema = betas * state.ema + (1 - betas) * relative
  new = LossState(reference, state.count + 1, ema, jnp.minimum(state.best, ema))
  return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)


def features(state: LossState) -> jax.Array:
  """The ``2 L`` loss features of ``state`` (see the module docstring)."""
  return jnp.concatenate([jnp.tanh(state.ema), jnp.tanh(RISE_SCALE * (state.ema - state.best))])
