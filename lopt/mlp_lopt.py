"""A per-parameter MLP learned optimizer in the style of small_fc_lopt (Metz et al., 2022).

For every parameter tensor ``p`` with gradient ``g`` the optimizer keeps momenta and a second moment,

    m_k <- beta_k m_k + (1 - beta_k) g          for each decay beta_k in ``momentum_decays``
    v   <- beta_v v   + (1 - beta_v) g^2

and builds, for every scalar parameter, the features

    [p, g, m_1..m_K, sqrt(v), g / sqrt(v), m_1 / sqrt(v) .. m_K / sqrt(v)]

each divided by its root-mean-square over the tensor (so the rule does not depend on the scale of a
tensor's gradients), followed by training-progress features ``tanh(s * t / T)`` for ``s`` in
``time_scales`` (``t`` the step, ``T`` the planned number of steps, ``t / T`` clipped to 1: steps past
``T`` are treated as the last step), and ``tanh(t / tau)`` for ``tau`` in ``step_scales`` (none by
default; ``lopt.features``). A small MLP, shared by all parameters, maps the features to a
direction ``d`` and a log-magnitude ``a``; the update is

    u = step_mult * d * exp(exp_mult * a).

``init_meta_params`` gives a theta that already trains: two hidden units of every layer carry the
feature ``m_1 / sqrt(v)`` through ``relu(x) - relu(-x) = x`` so that, at initialisation, ``d`` is the
normalised momentum-Adam direction ``-m_1 / sqrt(v)`` plus a small random function of the features
(``lopt.per_param_mlp``).

How the MLP runs is ``mlp_kernel`` (``lopt.mlp_kernels``): fused with the features and the update
into one elementwise loop per tensor (``"elementwise"``), once over the rows of all tensors as XLA
matmuls (``"xla"``), as one Pallas kernel that keeps the hidden activations on chip (``"pallas"``,
GPUs), or the fastest measured on the backend (``"auto"``, the default). It computes in
``mlp_dtype``: float32, or bfloat16 (float32 features, accumulators and update).

State: ``K + 1`` float32 numbers per parameter (Adam keeps 2).
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lopt import mlp_kernels, per_param_mlp
from lopt.accumulators import init_momenta, update_momenta
from lopt.features import (adam_feature_index, mlp_inputs, moment_features,
                           num_moment_features, time_features)
from lopt.tree_utils import map_leaves


class MLPLOptState(NamedTuple):
  """Optimizer state: arrays only, shaped like the parameters (momenta have a leading decay axis)."""
  momenta: Any
  second_moment: Any
  step: jax.Array
  num_steps: jax.Array


class PerParameterNetwork:
  """The methods ``MLPLOpt`` and ``AdafacMLPLOpt`` share about their network: a ``per_param_mlp`` of
  ``num_hidden_layers`` layers of ``hidden_size`` units on ``num_features`` inputs, run as
  ``mlp_kernel`` and ``mlp_dtype`` say, initialised to pass ``_adam_feature_index`` through."""

  def _check_network(self) -> None:
    per_param_mlp.check_size(type(self).__name__, self.hidden_size, self.num_hidden_layers)
    if any(tau <= 0 for tau in self.step_scales):
      raise ValueError(f"{type(self).__name__}: step_scales must be positive numbers of steps, got "
                       f"{self.step_scales}")
    mlp_kernels.check(self.mlp_kernel, self.mlp_dtype, self.hidden_size)

  @property
  def flops_per_parameter(self) -> int:
    """FLOPs of the shared MLP for one parameter (the lower bound of the update's cost)."""
    return per_param_mlp.flops_per_parameter(self.num_features, self.hidden_size,
                                             self.num_hidden_layers)

  def _tensor_updates(self, theta, params, inputs):
    """``mlp_kernels.tensor_updates`` with this optimizer's network settings."""
    return mlp_kernels.tensor_updates(theta, params, inputs, self.step_mult, self.exp_mult,
                                      self.mlp_kernel, self.mlp_dtype)

  def init_meta_params(self, key: jax.Array) -> per_param_mlp.MLPParams:
    return per_param_mlp.init(key, self.num_features, self.hidden_size, self.num_hidden_layers,
                              self._adam_feature_index)


@dataclasses.dataclass(frozen=True)
class MLPLOpt(PerParameterNetwork):
  """Per-parameter MLP learned optimizer; see the module docstring for the maths."""

  hidden_size: int = 32
  num_hidden_layers: int = 2
  momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
  second_moment_decay: float = 0.999
  time_scales: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
  step_scales: tuple[float, ...] = ()
  step_mult: float = 1e-3
  exp_mult: float = 0.1
  mlp_dtype: str = "float32"
  mlp_kernel: str = "auto"

  name: ClassVar[str] = "mlp"

  def __post_init__(self):
    self._check_network()
    if not self.momentum_decays:
      raise ValueError("MLPLOpt needs at least one momentum decay")

  @property
  def num_features(self) -> int:
    return (num_moment_features(len(self.momentum_decays), 1) + len(self.time_scales)
            + len(self.step_scales))

  @property
  def _adam_feature_index(self) -> int:
    """Index of ``m_1 / sqrt(v)`` in the feature vector."""
    return adam_feature_index(len(self.momentum_decays), 1)

  def init(self, theta, params, num_steps, roles=None) -> MLPLOptState:
    del theta, roles  # This architecture does not scale its updates by role.
    zeros = lambda p: jnp.zeros(p.shape, jnp.float32)
    return MLPLOptState(
        momenta=jax.tree.map(lambda p: init_momenta(p, len(self.momentum_decays)), params),
        second_moment=jax.tree.map(zeros, params),
        step=jnp.zeros((), jnp.int32),
        num_steps=jnp.asarray(num_steps, jnp.int32))

  def update(self, theta, opt_state: MLPLOptState, grads, params, loss=None):
    del loss  # This architecture does not read the loss.
    beta_v = self.second_moment_decay
    time = time_features(opt_state.step, opt_state.num_steps, self.time_scales,
                         self.step_scales)

    def accumulate_leaf(p, g, m, v):
      g32 = g.astype(jnp.float32)
      m = update_momenta(m, g32, self.momentum_decays)
      v = beta_v * v + (1 - beta_v) * jnp.square(g32)
      features = lambda p, g, m, v: moment_features(p, g, m, v[None])
      inputs, _ = mlp_inputs(features, (p.astype(jnp.float32), g32, m, v), time)
      return inputs, m, v

    inputs, momenta, second_moment = map_leaves(
        accumulate_leaf, params, grads, opt_state.momenta, opt_state.second_moment)
    updates = self._tensor_updates(theta, params, inputs)
    new_state = MLPLOptState(momenta, second_moment, opt_state.step + 1, opt_state.num_steps)
    return updates, new_state
