"""A per-parameter MLP learned optimizer with Adafactor-style factored second moments.

After the Adafac MLP LO of Metz et al. (2022, "Practical tradeoffs between memory, compute, and
performance in learned optimizers"): the features of ``MLPLOpt`` with every second moment factored, so
that the state of a matrix costs about what Adam's does.

For every parameter tensor ``p`` with gradient ``g`` (float32, whatever the dtype of ``p``):

    m_k <- beta_k m_k + (1 - beta_k) g                  for each beta_k in ``momentum_decays`` (K)

and, for each gamma_d in ``second_moment_decays`` (D), a second moment of ``g``. For a tensor of rank
>= 2 it is factored over the tensor's two largest axes ``a`` (rows) and ``b`` (columns), as in
Adafactor (Shazeer & Stern, 2018; ``lopt.accumulators``):

    r_d <- gamma_d r_d + (1 - gamma_d) mean_b(g^2)        one number per row
    c_d <- gamma_d c_d + (1 - gamma_d) mean_a(g^2)        one number per column
    v_d  = r_d c_d / mean_a(r_d)                          the rank-1 estimate (exact if g^2 = x_a y_b)

while vectors and scalars keep the full ``v_d <- gamma_d v_d + (1 - gamma_d) g^2``. The features of
each scalar parameter are

    [p, g, m_1..m_K, sqrt(v_1)..sqrt(v_D), g / sqrt(v_1)..g / sqrt(v_D),
     m_1 / sqrt(v_D)..m_K / sqrt(v_D)]

(``v_D`` belongs to the last decay, by default Adam's 0.999), each RMS-normalised over the tensor and
followed by the training-progress features ``tanh(s * min(t / T, 1))`` and ``tanh(t / tau)``
(``lopt.features``). The MLP shared by all parameters and the update
``u = step_mult * d * exp(exp_mult * a)`` are those of ``lopt.per_param_mlp``; at initialisation
``d`` is the factored momentum-Adam direction ``-m_1 / sqrt(v_D)`` (normalised) plus a small
random function of the features. As in
``MLPLOpt``, ``mlp_kernel`` and ``mlp_dtype`` say how the MLP runs (``lopt.mlp_kernels``).

Memory: an ``r x c`` matrix keeps ``K r c + D (r + c)`` float32 numbers; with the default two momenta
that is Adam's ``2 r c`` plus a vanishing ``D (r + c)``, half of ``MLPLOpt``'s ``4 r c``. Unlike
learned_optimization's ``AdafacMLPLOpt``, this one keeps no full-size second moment for matrices, its
decays are fixed rather than meta-learned, and its time features read the training fraction ``t / T``
(and, with ``step_scales``, the step count).
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lopt.accumulators import (init_momenta, init_second_moments, update_momenta,
                               update_second_moments)
from lopt.features import (accumulator_features, adam_feature_index, mlp_inputs,
                           num_moment_features, time_features)
from lopt.mlp_lopt import PerParameterNetwork
from lopt.tree_utils import map_leaves


class AdafacMLPLOptState(NamedTuple):
  """Optimizer state, arrays only.

  ``momenta``: per parameter, shape ``(K,) + p.shape``. ``second_moments``: per parameter, a dict
  ``{"row", "col"}`` for a factored tensor, ``{"full"}`` otherwise (``lopt.accumulators``).
  """
  momenta: Any
  second_moments: Any
  step: jax.Array
  num_steps: jax.Array


@dataclasses.dataclass(frozen=True)
class AdafacMLPLOpt(PerParameterNetwork):
  """Per-parameter MLP learned optimizer with factored second moments; see the module docstring."""

  hidden_size: int = 4
  num_hidden_layers: int = 2
  momentum_decays: tuple[float, ...] = (0.9, 0.99)
  second_moment_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
  time_scales: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
  step_scales: tuple[float, ...] = ()
  step_mult: float = 1e-3
  exp_mult: float = 0.1
  mlp_dtype: str = "float32"
  mlp_kernel: str = "auto"

  name: ClassVar[str] = "adafac_mlp"

  def __post_init__(self):
    self._check_network()
    if not self.momentum_decays or not self.second_moment_decays:
      raise ValueError(
          "AdafacMLPLOpt needs at least one momentum decay and one second-moment decay")

  @property
  def num_features(self) -> int:
    return (num_moment_features(len(self.momentum_decays), len(self.second_moment_decays))
            + len(self.time_scales) + len(self.step_scales))

  @property
  def _adam_feature_index(self) -> int:
    """Index of ``m_1 / sqrt(v_D)`` in the feature vector."""
    return adam_feature_index(len(self.momentum_decays), len(self.second_moment_decays))

  def init(self, theta, params, num_steps, roles=None) -> AdafacMLPLOptState:
    del theta, roles  # This architecture does not scale its updates by role.
    return AdafacMLPLOptState(
        momenta=jax.tree.map(lambda p: init_momenta(p, len(self.momentum_decays)), params),
        second_moments=jax.tree.map(
            lambda p: init_second_moments(p, len(self.second_moment_decays)), params),
        step=jnp.zeros((), jnp.int32),
        num_steps=jnp.asarray(num_steps, jnp.int32))

  def update(self, theta, opt_state: AdafacMLPLOptState, grads, params, loss=None):
    del loss  # This architecture does not read the loss.
    time = time_features(opt_state.step, opt_state.num_steps, self.time_scales,
                         self.step_scales)

    def accumulate_leaf(p, g, m, moments):
      g32 = g.astype(jnp.float32)
      m = update_momenta(m, g32, self.momentum_decays)
      moments, _ = update_second_moments(moments, jnp.square(g32), self.second_moment_decays)
      inputs, _ = mlp_inputs(accumulator_features, (p.astype(jnp.float32), g32, m, moments), time)
      return inputs, m, moments

    inputs, momenta, second_moments = map_leaves(
        accumulate_leaf, params, grads, opt_state.momenta, opt_state.second_moments)
    updates = self._tensor_updates(theta, params, inputs)
    new_state = AdafacMLPLOptState(momenta, second_moments, opt_state.step + 1,
                                   opt_state.num_steps)
    return updates, new_state
