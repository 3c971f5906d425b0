"""A direction-only learned optimizer: a tiny per-parameter MLP proposes, Newton-Schulz orthogonalises.

The learned network decides only the *direction* of each update; its size, its schedule over
training and the weight decay come from outside, exactly as for AdamW, and are tuned the same way
(the design of Celo2, Moudgil et al. 2026). A learned magnitude or schedule read from time
features does not transfer to other horizons (the shipped MLP LOs stretch or collapse there); a
learning rate from outside does, because it is set for the run at hand.

For every parameter tensor ``p`` with gradient ``g`` (non-finite entries read as 0) the optimizer
keeps momenta, a second moment and, for tensors of rank >= 2, Adafactor's factored second moment:

    m_k <- beta_k m_k + (1 - beta_k) g        beta_k in ``momentum_decays``   (0.9, 0.99, 0.999)
    v   <- beta_v v   + (1 - beta_v) g^2      beta_v = ``second_moment_decay`` (0.999)
    r, c <- row / column means of g^2, decayed by ``factored_decay`` (0.99);  f = r c / mean(r)

**Matrices** (rank 2; a rank-4 convolution kernel ``HWIO`` is read as the ``(H W I, O)`` matrix)
get the features, each divided by its root-mean-square over the tensor (``lopt.features``),

    [p, g, m_1..m_K, sqrt(v), g / sqrt(v), m_1..m_K / sqrt(v), g / sqrt(f), m_1 / sqrt(f),
     1 / sqrt(r), 1 / sqrt(c)]                                           (14 features for K = 3)

and no time, horizon or loss feature. A small MLP shared by all parameters (14 -> 8 -> 8 -> 1
by default: 201 meta-parameters) maps them to a direction ``d`` per parameter; the tensor's
direction is then orthogonalised and rescaled,

    D = NS_5(d)  *  sqrt(max(1, fan_out / fan_in)) / rms(NS_5(d)),

where ``NS_5`` is five steps of Newton-Schulz's quintic iteration ``X <- a X + (b A + c A^2) X``,
``A = X X^T``, ``(a, b, c) = (3.4445, -4.7750, 2.0315)``, from ``X = d / |d|_F`` (Muon's, Jordan
et al. 2024): it maps ``d = U S V^T`` to about ``U V^T``, every singular value near 1. Dividing by
the RMS gives every matrix an update of RMS 1, like Adam's normalised step, so that one learning
rate means the same for matrices and vectors and is set as AdamW's is; the factor
``sqrt(max(1, fan_out / fan_in))`` is Muon's shape factor (optax's ``muon``, Keller Jordan's):
a layer that widens its input (an MLP's up-projection) moves its outputs as much as a square one,
so that a learning rate tuned on one width carries to another.

**Vectors and scalars** (biases, norm scales) take Adam's direction with bias correction,
``D = -m_1_hat / (sqrt(v_hat) + 1e-8)``, times ``vector_lr_ratio``.

The update of every tensor is decoupled weight decay and the learning rate, as in AdamW:

    u = lr_t (D - lambda p),      lambda = ``weight_decay``,

with ``D`` the descent direction above (the network's output points downhill, as Adam's
``-m_hat / sqrt(v_hat)`` does). ``lr_t`` is ``learning_rate`` times a linear warmup
over ``warmup_fraction`` of the planned ``num_steps`` and a cosine decay to 0 at ``num_steps``
(steps past it keep 0), or ``learning_rate(t)`` when ``learning_rate`` is an optax schedule.
``lopt.as_optax(lo, theta, num_steps, learning_rate=..., weight_decay=...)`` sets both; the
defaults are those the optimizer was meta-trained with (its card's).

``init_meta_params`` gives a theta that already trains: two hidden units of each layer carry the
normalised momentum ``m_1`` through, so at initialisation ``d = -m_1 / rms(m_1)`` plus a small
random function of the features, and the optimizer is Muon (momentum 0.9, no Nesterov) with the
RMS-1 scaling above; meta-training moves it from there.

The network runs as ``mlp_kernel`` says (``lopt.mlp_kernels``; by default the fastest measured on
the backend).

State: ``K + 1`` float32 numbers per parameter and ``r + c`` per matrix (Adam keeps 2).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt import mlp_kernels, per_param_mlp
from lopt.accumulators import (init_momenta, init_second_moments, second_moment_estimate,
                               update_momenta, update_second_moments)
from lopt.features import EPS, mlp_inputs, moment_features, num_moment_features
from lopt.roles import fan_in
from lopt.tree_utils import map_leaves

# Muon's quintic Newton-Schulz coefficients (Jordan et al., 2024).
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Ranks of the tensors that are orthogonalised: matrices and HWIO convolution kernels.
ORTHOGONALISED_RANKS = (2, 4)


class OrthoMLPLOptState(NamedTuple):
  """Optimizer state: arrays only. Momenta have a leading decay axis; ``factored`` holds each
  tensor's ``accumulators.init_second_moments`` (row / column for matrices)."""
  momenta: Any
  second_moment: Any
  factored: Any
  step: jax.Array
  num_steps: jax.Array


def newton_schulz(x: jax.Array, num_steps: int = 5) -> jax.Array:
  """About ``U V^T`` for the matrix ``x = U S V^T``: ``num_steps`` quintic Newton-Schulz steps
  from ``x / |x|_F`` (see the module docstring). Works on the shorter side's Gram matrix."""
  a, b, c = NEWTON_SCHULZ_COEFFICIENTS
  tall = x.shape[0] > x.shape[1]
  x = x.T if tall else x
  x = x / (jnp.linalg.norm(x) + EPS)
  for _ in range(num_steps):
    gram = x @ x.T
    x = a * x + (b * gram + c * gram @ gram) @ x
  return x.T if tall else x


def as_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """``(fan_in, fan_out)``: all axes but the last, then the last (dense and HWIO conv kernels)."""
  return fan_in(shape), shape[-1]


def _matrix_features(p: jax.Array, g: jax.Array, m: jax.Array, v: jax.Array,
                     factored: dict[str, jax.Array]) -> list[jax.Array]:
  """A matrix's features before normalisation (the module docstring's list): ``moment_features``,
  then ``g / sqrt(f)``, ``m_1 / sqrt(f)``, ``1 / sqrt(r)`` and ``1 / sqrt(c)``."""
  rsqrt_f = jax.lax.rsqrt(second_moment_estimate(factored)[0] + EPS)
  row, col = factored["row"][0], factored["col"][0]
  return moment_features(p, g, m, v[None]) + [
      g * rsqrt_f, m[0] * rsqrt_f, jnp.broadcast_to(jax.lax.rsqrt(row + EPS), p.shape),
      jnp.broadcast_to(jax.lax.rsqrt(col + EPS), p.shape)]


def _safe(x: jax.Array) -> jax.Array:
  """``x`` with non-finite entries replaced by 0."""
  return jnp.where(jnp.isfinite(x), x, 0.0)


def warmup_cosine(step: jax.Array, num_steps: jax.Array, warmup_fraction: float) -> jax.Array:
  """The schedule's multiplier, that of ``optax.warmup_cosine_decay_schedule(0, 1, w, T)``:
  ``t / w`` for ``t < w = floor(warmup_fraction T)``, then ``(1 + cos(pi (t - w) / (T - w))) / 2``,
  and 0 from ``T`` on; ``T`` may be traced."""
  step = step.astype(jnp.float32)
  num_steps = num_steps.astype(jnp.float32)
  warmup = jnp.floor(warmup_fraction * num_steps)
  rising = step / jnp.maximum(warmup, 1.0)
  progress = jnp.clip((step - warmup) / jnp.maximum(num_steps - warmup, 1.0), 0.0, 1.0)
  return jnp.where(step < warmup, rising, 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))


def check_learning_rate(learning_rate: Any, weight_decay: Any, owner: str) -> None:
  """``ValueError`` unless ``learning_rate`` is a float >= 0 or a schedule (a callable of the step)
  and ``weight_decay`` a float >= 0."""
  if not (callable(learning_rate) or (isinstance(learning_rate, (int, float))
                                      and not isinstance(learning_rate, bool)
                                      and learning_rate >= 0)):
    raise ValueError(f"{owner}: learning_rate must be a float >= 0 or an optax schedule (a "
                     f"function of the step), got {learning_rate!r}")
  if not (isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool)
          and weight_decay >= 0):
    raise ValueError(f"{owner}: weight_decay must be a float >= 0, got {weight_decay!r}")


def check_shapes(params) -> None:
  """``ValueError`` naming the first parameter whose rank is neither <= 1 (Adam) nor one of
  ``ORTHOGONALISED_RANKS``, with the fix."""
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    if np.ndim(p) > 1 and np.ndim(p) not in ORTHOGONALISED_RANKS:
      raise ValueError(
          f"parameter '{jax.tree_util.keystr(path)}' has shape {np.shape(p)}: the ortho_mlp "
          "optimizer orthogonalises matrices (rank 2) and HWIO convolution kernels (rank 4), and "
          "a rank-3 or rank-5+ tensor has no one matrix reading; store it as a matrix in the "
          "model (e.g. flax nn.Dense instead of nn.DenseGeneral, or reshape the kernel)")


@dataclasses.dataclass(frozen=True)
class OrthoMLPLOpt:
  """Direction-only orthogonalised learned optimizer; see the module docstring for the maths."""

  hidden_size: int = 8
  num_hidden_layers: int = 2
  momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
  second_moment_decay: float = 0.999
  factored_decay: float = 0.99
  newton_schulz_steps: int = 5
  learning_rate: float | Callable[[jax.Array], jax.Array] = 1e-2
  warmup_fraction: float = 0.05
  weight_decay: float = 0.0
  vector_lr_ratio: float = 1.0
  mlp_kernel: str = "auto"

  name: ClassVar[str] = "ortho_mlp"
  # The learning rate and weight decay come from outside (``lopt.as_optax`` sets them).
  takes_learning_rate: ClassVar[bool] = True

  def __post_init__(self):
    per_param_mlp.check_size(type(self).__name__, self.hidden_size, self.num_hidden_layers)
    if not self.momentum_decays:
      raise ValueError("OrthoMLPLOpt needs at least one momentum decay")
    if self.newton_schulz_steps < 1:
      raise ValueError(f"OrthoMLPLOpt: newton_schulz_steps must be >= 1, got "
                       f"{self.newton_schulz_steps}")
    if not 0.0 <= self.warmup_fraction < 1.0:
      raise ValueError(f"OrthoMLPLOpt: warmup_fraction must be in [0, 1), got "
                       f"{self.warmup_fraction}")
    if not self.vector_lr_ratio >= 0:
      raise ValueError(f"OrthoMLPLOpt: vector_lr_ratio must be >= 0, got {self.vector_lr_ratio}")
    check_learning_rate(self.learning_rate, self.weight_decay, type(self).__name__)
    mlp_kernels.check(self.mlp_kernel, "float32", self.hidden_size)

  @property
  def num_features(self) -> int:
    return num_moment_features(len(self.momentum_decays), 1) + 4

  @property
  def flops_per_parameter(self) -> int:
    """FLOPs of the shared MLP for one matrix entry (Newton-Schulz not counted)."""
    return per_param_mlp.flops_per_parameter(self.num_features, self.hidden_size,
                                             self.num_hidden_layers, num_outputs=1)

  def init_meta_params(self, key: jax.Array) -> per_param_mlp.MLPParams:
    momentum_index = 2  # [p, g, m_1, ...]: the network passes m_1 through at initialisation.
    return per_param_mlp.init(key, self.num_features, self.hidden_size, self.num_hidden_layers,
                              momentum_index, num_outputs=1)

  def init(self, theta, params, num_steps, roles=None) -> OrthoMLPLOptState:
    del theta, roles  # The shape factor reads fans from the shapes; roles are not needed.
    check_shapes(params)
    zeros = lambda p: jnp.zeros(p.shape, jnp.float32)
    return OrthoMLPLOptState(
        momenta=jax.tree.map(lambda p: init_momenta(p, len(self.momentum_decays)), params),
        second_moment=jax.tree.map(zeros, params),
        factored=jax.tree.map(
            lambda p: init_second_moments(p, 1) if p.ndim > 1 else {}, params),
        step=jnp.zeros((), jnp.int32),
        num_steps=jnp.asarray(num_steps, jnp.int32))

  def learning_rate_at(self, step: jax.Array, num_steps: jax.Array) -> jax.Array:
    """``lr_t`` of the module docstring."""
    if callable(self.learning_rate):
      return jnp.asarray(self.learning_rate(step), jnp.float32)
    return self.learning_rate * warmup_cosine(step, num_steps, self.warmup_fraction)

  def update(self, theta, opt_state: OrthoMLPLOptState, grads, params, loss=None):
    del loss  # This architecture does not read the loss.
    beta_v = self.second_moment_decay
    step = opt_state.step + 1

    def accumulate_leaf(p, g, m, v, factored):
      g32 = _safe(g.astype(jnp.float32))
      m = update_momenta(m, g32, self.momentum_decays)
      v = beta_v * v + (1 - beta_v) * jnp.square(g32)
      if p.ndim <= 1:
        return None, m, v, factored
      factored, _ = update_second_moments(factored, jnp.square(g32), (self.factored_decay,))
      inputs, _ = mlp_inputs(_matrix_features, (p.astype(jnp.float32), g32, m, v, factored))
      return inputs, m, v, factored

    inputs, momenta, second_moment, factored = map_leaves(
        accumulate_leaf, params, grads, opt_state.momenta, opt_state.second_moment,
        opt_state.factored)
    treedef = jax.tree.structure(params)
    leaves = treedef.flatten_up_to(params)
    matrix_inputs = [x for x, p in zip(treedef.flatten_up_to(inputs), leaves) if p.ndim > 1]
    outputs = iter(mlp_kernels.apply_to_tensors(theta, matrix_inputs, self.mlp_kernel))
    lr = self.learning_rate_at(opt_state.step, opt_state.num_steps)

    def direction(p, m, v):
      if p.ndim > 1:
        (network_direction,) = next(outputs)
        return self._matrix_direction(network_direction)
      m_hat = m[0] / (1 - self.momentum_decays[0] ** step)
      v_hat = v / (1 - beta_v ** step)
      return -self.vector_lr_ratio * m_hat / (jnp.sqrt(v_hat) + 1e-8)

    directions = [direction(p, m, v) for p, m, v in zip(
        leaves, treedef.flatten_up_to(momenta), treedef.flatten_up_to(second_moment))]
    updates = treedef.unflatten([
        _safe(lr * (d - self.weight_decay * p.astype(jnp.float32))).astype(p.dtype)
        for d, p in zip(directions, leaves)])
    new_state = OrthoMLPLOptState(momenta, second_moment, factored, step,
                                  opt_state.num_steps)
    return updates, new_state

  def _matrix_direction(self, d: jax.Array) -> jax.Array:
    """``NS(d) sqrt(max(1, fan_out / fan_in)) / rms(NS(d))`` on the matrix reading of ``d``."""
    rows, columns = as_matrix_shape(d.shape)
    orthogonal = newton_schulz(d.reshape(rows, columns), self.newton_schulz_steps)
    scale = math.sqrt(max(1.0, columns / rows)) * jax.lax.rsqrt(
        jnp.mean(jnp.square(orthogonal)) + EPS)
    return (scale * orthogonal).reshape(d.shape)
