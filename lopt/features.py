"""Input features shared by the per-parameter MLP learned optimizers.

Each scalar parameter is described by a vector of per-parameter features (the parameter, its gradient,
accumulators…). A feature's scale differs between tensors and over training, so each is divided by its
root-mean-square over the tensor,

    f_i <- f_i / sqrt(mean_tensor(f_i^2) + eps),

which makes the rule invariant to the scale of a tensor's gradients. Training-progress features

    tanh(s * min(t / T, 1))          for s in the time scales
    tanh(t / tau)                    for tau in the step scales

(``t`` the step, ``T`` the planned number of steps) are appended unnormalised; ``t / T`` is clipped
to 1, so steps past ``T`` are read as the last step. The first tell the optimizer where it is in a
planned training (what annealing needs); the second, optional, how many steps it has taken (what a
transient such as a warmup, or the growth of the weights, depends on), whatever the planned length.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from lopt.accumulators import second_moment_estimate

EPS = 1e-8


def mean_squares(features: Sequence[jax.Array]) -> jax.Array:
  """``mean_tensor(f_i^2)`` of each feature, shape ``(F,)``: one reduction per feature, each of
  contiguous memory. (Stacked on the last axis, as an MLP reads them, the reduction is strided and
  on a GPU cost several times the rest of the update; stacked on a leading axis it materialises all
  features at once, 1.5x slower on a CPU.)"""
  return jnp.stack([jnp.mean(jnp.square(f)) for f in features])


def normalised(features: Sequence[jax.Array], mean_square: jax.Array,
               columns: jax.Array) -> list[jax.Array]:
  """The network's inputs: ``f_i / sqrt(mean_square_i + eps)`` for each feature (arrays shaped like
  the parameter), then one scalar per entry of ``columns`` (per-tensor values such as the time
  features; may be empty). ``lopt.mlp_kernels`` runs the network on such lists."""
  scales = jax.lax.rsqrt(mean_square + EPS)
  return [f * scales[i] for i, f in enumerate(features)] + list(columns)


def time_features(step: jax.Array, num_steps: jax.Array, scales: Sequence[float],
                  step_scales: Sequence[float] = ()) -> jax.Array:
  """``tanh(s * min(step / num_steps, 1))`` for each ``s`` in ``scales``, then ``tanh(step / tau)``
  for each ``tau`` in ``step_scales``; shape ``(len(scales) + len(step_scales),)``."""
  progress = jnp.minimum(step / num_steps, 1.0)
  fractions = jnp.tanh(jnp.asarray(scales, jnp.float32) * progress)
  steps = jnp.tanh(step / jnp.asarray(step_scales, jnp.float32))
  return jnp.concatenate([fractions, steps])


def mlp_inputs(feature_fn: Callable[..., list[jax.Array]], state: tuple,
               columns: jax.Array | Sequence = ()) -> tuple[list[jax.Array], jax.Array]:
  """The MLP's inputs ``normalised(feature_fn(*state), mean_square, columns)`` for a tensor whose
  features ``feature_fn`` computes from ``state`` (its parameter, gradient and accumulators), and
  the features' ``mean_square``.

  ``feature_fn`` runs twice: once for the mean squares and once, on ``state`` passed through an
  optimisation barrier (so that XLA cannot merge the two), for the network. Each copy of the
  features then has one consumer, so XLA fuses it into that consumer (the reductions; the
  elementwise network of ``lopt.mlp_kernels``) instead of writing every feature to memory for
  both to read: on a CPU, whose fresh output buffers cost page faults, this halved the update.
  """
  mean_square = mean_squares(feature_fn(*state))
  features = feature_fn(*jax.lax.optimization_barrier(state))
  return normalised(features, mean_square, columns), mean_square


def moment_features(p: jax.Array, g: jax.Array, momenta: jax.Array,
                    second_moments: jax.Array) -> list[jax.Array]:
  """The per-parameter features of a float32 parameter ``p`` and gradient ``g``, momenta ``m``
  (shape ``(K,) + p.shape``) and second moments ``v`` (shape ``(D,) + p.shape``), as a list of
  arrays shaped like ``p``:

      [p, g, m_1..m_K, sqrt(v_1)..sqrt(v_D), g / sqrt(v_1)..g / sqrt(v_D),
       m_1 / sqrt(v_D)..m_K / sqrt(v_D)]

  (``EPS`` is added to ``v`` inside the roots, which also keeps d sqrt / dv finite at ``v = 0``).
  """
  rsqrt_v = jax.lax.rsqrt(second_moments + EPS)
  return [p, g, *momenta, *jnp.sqrt(second_moments + EPS), *(g * rsqrt_v),
          *(momenta * rsqrt_v[-1])]


def accumulator_features(p: jax.Array, g: jax.Array, momenta: jax.Array,
                         moments: dict[str, jax.Array]) -> list[jax.Array]:
  """``moment_features`` with the second moments that the (possibly factored) accumulators
  ``moments`` stand for (``accumulators.second_moment_estimate``)."""
  return moment_features(p, g, momenta, second_moment_estimate(moments))


def num_moment_features(num_momenta: int, num_second_moments: int) -> int:
  """The length of the ``moment_features`` vector."""
  return 2 + 2 * num_momenta + 2 * num_second_moments


def adam_feature_index(num_momenta: int, num_second_moments: int) -> int:
  """The index of ``m_1 / sqrt(v_D)`` (the normalised momentum-Adam direction) in
  ``moment_features``."""
  return 2 + num_momenta + 2 * num_second_moments
