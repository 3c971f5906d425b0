"""Input features shared by the per-parameter MLP learned optimizers.

Each scalar parameter is described by a vector of per-parameter features (the parameter, its gradient,
accumulators…). A feature's scale differs between tensors and over training, so each is divided by its
root-mean-square over the tensor,

    f_i <- f_i / sqrt(mean_tensor(f_i^2) + eps),

which makes the rule invariant to the scale of a tensor's gradients. Training-progress features

    tanh(s * min(t / T, 1))          for s in the time scales

(``t`` the step, ``T`` the planned number of steps) are appended unnormalised; ``t / T`` is clipped
to 1, so steps past ``T`` are read as the last step.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

EPS = 1e-8


def rms_normalise(x: jax.Array) -> jax.Array:
  """Divides each feature (last axis) by its root-mean-square over the tensor (all other axes)."""
  axes = tuple(range(x.ndim - 1))
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + EPS)


def time_features(step: jax.Array, num_steps: jax.Array, scales: Sequence[float]) -> jax.Array:
  """``tanh(s * min(step / num_steps, 1))`` for each ``s`` in ``scales``; shape ``(len(scales),)``."""
  progress = jnp.minimum(step / num_steps, 1.0)
  return jnp.tanh(jnp.asarray(scales, jnp.float32) * progress)


def mlp_inputs(features: jax.Array, time: jax.Array) -> jax.Array:
  """The MLP's input: ``features`` (shape ``p.shape + (F,)``) RMS-normalised, ``time`` appended."""
  features = rms_normalise(features)
  return jnp.concatenate(
      [features, jnp.broadcast_to(time, features.shape[:-1] + time.shape)], axis=-1)


def moment_features(p: jax.Array, g: jax.Array, momenta: jax.Array,
                    second_moments: jax.Array) -> jax.Array:
  """The per-parameter features of a float32 parameter ``p`` and gradient ``g``, momenta ``m``
  (shape ``(K,) + p.shape``) and second moments ``v`` (shape ``(D,) + p.shape``), stacked on a new
  last axis:

      [p, g, m_1..m_K, sqrt(v_1)..sqrt(v_D), g / sqrt(v_1)..g / sqrt(v_D),
       m_1 / sqrt(v_D)..m_K / sqrt(v_D)]

  (``EPS`` is added to ``v`` inside the roots, which also keeps d sqrt / dv finite at ``v = 0``).
  """
  rsqrt_v = jax.lax.rsqrt(second_moments + EPS)
  return jnp.stack([p, g, *momenta, *jnp.sqrt(second_moments + EPS), *(g * rsqrt_v),
                    *(momenta * rsqrt_v[-1])], axis=-1)


def num_moment_features(num_momenta: int, num_second_moments: int) -> int:
  """The length of the ``moment_features`` vector."""
  return 2 + 2 * num_momenta + 2 * num_second_moments


def adam_feature_index(num_momenta: int, num_second_moments: int) -> int:
  """The index of ``m_1 / sqrt(v_D)`` (the normalised momentum-Adam direction) in
  ``moment_features``."""
  return 2 + num_momenta + 2 * num_second_moments
