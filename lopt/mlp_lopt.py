"""A per-parameter MLP learned optimizer in the style of small_fc_lopt (Metz et al., 2022).

For every parameter tensor ``p`` with gradient ``g`` the optimizer keeps momenta and a second moment,

    m_k <- beta_k m_k + (1 - beta_k) g          for each decay beta_k in ``momentum_decays``
    v   <- beta_v v   + (1 - beta_v) g^2

and builds, for every scalar parameter, the features

    [p, g, m_1..m_K, sqrt(v), g / sqrt(v), m_1 / sqrt(v) .. m_K / sqrt(v)]

each divided by its root-mean-square over the tensor (so the rule does not depend on the scale of a
tensor's gradients), followed by training-progress features ``tanh(s * t / T)`` for ``s`` in
``time_scales`` (``t`` the step, ``T`` the planned number of steps, ``t / T`` clipped to 1: steps past
``T`` are treated as the last step). A small MLP, shared by all parameters, maps the features to a
direction ``d`` and a log-magnitude ``a``; the update is

    u = step_mult * d * exp(exp_mult * a).

``init_meta_params`` gives a theta that already trains: two hidden units of every layer carry the
feature ``m_1 / sqrt(v)`` through ``relu(x) - relu(-x) = x`` so that, at initialisation, ``d`` is the
normalised momentum-Adam direction ``-m_1 / sqrt(v)`` plus a small random function of the features.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

_EPS = 1e-8
# Scale of the random part of the output layer at initialisation, relative to the Adam-like path.
_RANDOM_OUTPUT_SCALE = 0.01


class MLPLOptState(NamedTuple):
  """Optimizer state: arrays only, shaped like the parameters (momenta have a leading decay axis)."""
  momenta: Any
  second_moment: Any
  step: jax.Array
  num_steps: jax.Array


def _rms_normalise(x: jax.Array) -> jax.Array:
  """Divides each feature (last axis) by its root-mean-square over the tensor (all other axes)."""
  axes = tuple(range(x.ndim - 1))
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + _EPS)


@dataclasses.dataclass(frozen=True)
class MLPLOpt:
  """Per-parameter MLP learned optimizer; see the module docstring for the maths."""

  hidden_size: int = 32
  num_hidden_layers: int = 2
  momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
  second_moment_decay: float = 0.999
  time_scales: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
  step_mult: float = 1e-3
  exp_mult: float = 0.1

  name: ClassVar[str] = "mlp"

  def __post_init__(self):
    if self.hidden_size < 2 or self.num_hidden_layers < 1:
      raise ValueError("MLPLOpt needs hidden_size >= 2 and num_hidden_layers >= 1, got "
                       f"hidden_size={self.hidden_size}, num_hidden_layers={self.num_hidden_layers}")
    if not self.momentum_decays:
      raise ValueError("MLPLOpt needs at least one momentum decay")

  @property
  def num_features(self) -> int:
    return 4 + 2 * len(self.momentum_decays) + len(self.time_scales)

  @property
  def _adam_feature_index(self) -> int:
    """Index of ``m_1 / sqrt(v)`` in the feature vector."""
    return 4 + len(self.momentum_decays)

  def init_meta_params(self, key: jax.Array) -> dict[str, dict[str, jax.Array]]:
    sizes = [self.num_features] + [self.hidden_size] * self.num_hidden_layers + [2]
    keys = jax.random.split(key, len(sizes) - 1)
    theta = {}
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
      w = jax.random.normal(k, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
      is_output = i == len(sizes) - 2
      if is_output:
        w = w * _RANDOM_OUTPUT_SCALE
        # direction = relu(-x) - relu(x) = -x, read from the two pass-through units.
        w = w.at[:2, 0].set(jnp.array([-1.0, 1.0]))
      else:
        source = jnp.zeros((fan_in, 2))
        if i == 0:
          source = source.at[self._adam_feature_index].set(jnp.array([1.0, -1.0]))
        else:
          source = source.at[:2, :2].set(jnp.eye(2))
        w = w.at[:, :2].set(source)
      theta[f"linear_{i}"] = {"w": w, "b": jnp.zeros((fan_out,))}
    return theta

  def init(self, theta, params, num_steps) -> MLPLOptState:
    del theta
    zeros = lambda p: jnp.zeros(p.shape, jnp.float32)
    return MLPLOptState(
        momenta=jax.tree.map(lambda p: jnp.zeros((len(self.momentum_decays),) + p.shape,
                                                 jnp.float32), params),
        second_moment=jax.tree.map(zeros, params),
        step=jnp.zeros((), jnp.int32),
        num_steps=jnp.asarray(num_steps, jnp.int32))

  def update(self, theta, opt_state: MLPLOptState, grads, params, loss=None):
    del loss  # This architecture does not read the loss.
    decays = jnp.asarray(self.momentum_decays, jnp.float32)
    beta_v = self.second_moment_decay
    progress = jnp.minimum(opt_state.step / opt_state.num_steps, 1.0)
    time_features = jnp.tanh(jnp.asarray(self.time_scales, jnp.float32) * progress)

    def update_leaf(p, g, m, v):
      g32 = g.astype(jnp.float32)
      decay_shape = (-1,) + (1,) * g.ndim
      m = decays.reshape(decay_shape) * m + (1 - decays.reshape(decay_shape)) * g32
      v = beta_v * v + (1 - beta_v) * jnp.square(g32)
      rsqrt_v = jax.lax.rsqrt(v + _EPS)
      features = jnp.stack([p.astype(jnp.float32), g32, *m, jnp.sqrt(v), g32 * rsqrt_v,
                            *(m * rsqrt_v)], axis=-1)
      features = _rms_normalise(features)
      features = jnp.concatenate(
          [features, jnp.broadcast_to(time_features, g.shape + time_features.shape)], axis=-1)
      out = self._apply_mlp(theta, features)
      direction, log_magnitude = out[..., 0], out[..., 1]
      step = self.step_mult * direction * jnp.exp(self.exp_mult * log_magnitude)
      return step.astype(p.dtype), m, v

    treedef = jax.tree.structure(params)
    per_leaf = [update_leaf(*leaves) for leaves in zip(
        treedef.flatten_up_to(params), treedef.flatten_up_to(grads),
        treedef.flatten_up_to(opt_state.momenta), treedef.flatten_up_to(opt_state.second_moment))]
    updates, momenta, second_moment = (treedef.unflatten(column) for column in zip(*per_leaf))
    new_state = MLPLOptState(momenta, second_moment, opt_state.step + 1, opt_state.num_steps)
    return updates, new_state

  def _apply_mlp(self, theta, x: jax.Array) -> jax.Array:
    num_layers = self.num_hidden_layers + 1
    for i in range(num_layers):
      layer = theta[f"linear_{i}"]
      x = x @ layer["w"] + layer["b"]
      if i < num_layers - 1:
        x = jax.nn.relu(x)
    return x
