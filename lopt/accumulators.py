"""Per-parameter accumulators of the learned optimizers: momenta and (factored) second moments.

Momenta, one per decay ``beta_k`` (stacked on a leading axis):

    m_k <- beta_k m_k + (1 - beta_k) g.

Second moments, one per decay ``gamma_d``. For a tensor of rank >= 2 they are factored over its two
largest axes ``a`` (rows) and ``b`` (columns), as in Adafactor (Shazeer & Stern, 2018):

    r_d <- gamma_d r_d + (1 - gamma_d) mean_b(g^2)        one number per row
    c_d <- gamma_d c_d + (1 - gamma_d) mean_a(g^2)        one number per column
    v_d  = r_d c_d / mean_a(r_d)                          the rank-1 estimate (exact if g^2 = x_a y_b)

so that an ``r x c`` matrix keeps ``r + c`` numbers per decay instead of ``r c``; vectors and scalars
keep the full ``v_d <- gamma_d v_d + (1 - gamma_d) g^2``. All accumulators are float32.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Guards r_d c_d / mean_a(r_d) against 0 / 0 before any gradient has been seen.
_TINY = 1e-30


def init_momenta(p: jax.Array, num_decays: int) -> jax.Array:
  """Zero momenta for ``p``, shape ``(num_decays,) + p.shape``."""
  return jnp.zeros((num_decays,) + p.shape, jnp.float32)


def update_momenta(m: jax.Array, g: jax.Array, decays: Sequence[float]) -> jax.Array:
  """``m_k <- beta_k m_k + (1 - beta_k) g`` for each decay ``beta_k`` (the leading axis of ``m``)."""
  betas = jnp.asarray(decays, jnp.float32).reshape((-1,) + (1,) * g.ndim)
  return betas * m + (1 - betas) * g


def factored_axes(shape: tuple[int, ...]) -> tuple[int, int] | None:
  """The two axes ``(a, b)``, ``a < b``, a second moment of this shape is factored over: the two
  largest (the later one on ties), or ``None`` for vectors and scalars, which are not factored."""
  if len(shape) < 2:
    return None
  a, b = sorted(int(i) for i in np.argsort(shape, kind="stable")[-2:])
  return a, b


def init_second_moments(p: jax.Array, num_decays: int) -> dict[str, jax.Array]:
  """Zero second moments for ``p``, per decay: ``{"row": (D,) + p.shape with axis b set to 1,
  "col": (D,) + p.shape with axis a set to 1}`` if it is factored, else ``{"full": (D,) + p.shape}``.
  """
  axes = factored_axes(p.shape)
  if axes is None:
    return {"full": jnp.zeros((num_decays,) + p.shape, jnp.float32)}
  a, b = axes
  row_shape, col_shape = list(p.shape), list(p.shape)
  row_shape[b], col_shape[a] = 1, 1
  return {"row": jnp.zeros((num_decays, *row_shape), jnp.float32),
          "col": jnp.zeros((num_decays, *col_shape), jnp.float32)}


def update_second_moments(moments: dict[str, jax.Array], g2: jax.Array, decays: Sequence[float]
                          ) -> tuple[dict[str, jax.Array], jax.Array]:
  """Decays the accumulators towards the squared gradient ``g2`` (see the module docstring); returns
  them and the second moments ``v``, shape ``(len(decays),) + g2.shape`` (rank-1 if factored)."""
  gammas = jnp.asarray(decays, jnp.float32).reshape((-1,) + (1,) * g2.ndim)
  accumulate = lambda old, new: gammas * old + (1 - gammas) * new
  axes = factored_axes(g2.shape)
  if axes is None:
    moments = {"full": accumulate(moments["full"], g2)}
  else:
    a, b = axes
    moments = {"row": accumulate(moments["row"], jnp.mean(g2, axis=b, keepdims=True)),
               "col": accumulate(moments["col"], jnp.mean(g2, axis=a, keepdims=True))}
  return moments, second_moment_estimate(moments)


def second_moment_estimate(moments: dict[str, jax.Array]) -> jax.Array:
  """The second moments ``v`` the accumulators stand for, shape ``(D,) + p.shape``:
  ``r c / mean_a(r)`` if factored, else the full ones."""
  if "full" in moments:
    return moments["full"]
  row, col = moments["row"], moments["col"]
  a, _ = factored_axes(jnp.broadcast_shapes(row.shape, col.shape)[1:])
  return row * col / (jnp.mean(row, axis=1 + a, keepdims=True) + _TINY)
