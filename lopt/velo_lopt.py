"""A VeLO-style learned optimizer: a per-tensor LSTM writes a per-parameter MLP and a step size.

After VeLO (Metz et al., 2022, "VeLO: Training versatile learned optimizers by scaling up"), at a
CPU-friendly size. For every parameter tensor ``p`` with gradient ``g`` (float32, whatever the
dtype of ``p``) the optimizer keeps momenta ``m_k`` (decays ``momentum_decays``, K of them) and
Adafactor-style factored second moments ``v_d`` (decays ``second_moment_decays``, D of them;
``lopt.accumulators``), and builds for every scalar parameter the features of
``lopt.features.moment_features``,

    f = [p, g, m_1..m_K, sqrt(v_1)..sqrt(v_D), g / sqrt(v_1)..g / sqrt(v_D),
         m_1 / sqrt(v_D)..m_K / sqrt(v_D)]                                  (F = 2 + 2K + 2D)

**Per-tensor controller.** Tensor ``t`` is summarised by the vector ``x_t``:

    * ``LOG_RMS_SCALE * log RMS_t(f_j)`` for each feature ``j``: the scale of the parameters, of
      the gradient, of each momentum and second moment, and of the normalised steps
      (``m_k / sqrt(v)`` has RMS near 1 when the gradient's sign is consistent, near 0 for noise);
    * its shape: a one-hot of its rank (axes longer than 1, capped at ``MAX_RANK``) and
      ``LOG_RMS_SCALE * log(size)``;
    * the training fraction, ``tanh(s * min(t / T, 1))`` for ``s`` in ``time_scales``
      (``lopt.features.time_features``: steps past ``T`` are read as the last step);
    * the loss features of ``lopt.loss_features`` (the loss relative to the first loss, averaged at
      each of ``loss_decays``, and how far each average rose above its best; zeros without a loss).

As VeLO's mixing layer does, every tensor also sees a summary of all of them,
``c = max_t relu(x_t W_c + b_c)``. An LSTM cell per tensor (``lopt.lstm``, weights shared, hidden
size ``lstm_hidden_size``, its state ``(h_t, c_t)`` kept in the optimizer state) reads
``[x_t, c]``, and two heads read its output ``h_t``:

    w_t = softmax(h_t W_w + b_w)    weights over a bank of ``num_bases`` MLPs theta_1..theta_B
    s_t = h_t w_s + b_s             the tensor's log step size.

**Per-parameter rule.** The MLP of tensor ``t`` is the mix ``theta_t = sum_b w_tb theta_b`` of the
bank's weights (MLPs of ``lopt.per_param_mlp``, ``num_hidden_layers`` layers of ``hidden_size``).
It maps the RMS-normalised features ``f`` of each parameter (``lopt.features``) to a direction
``d`` and a log-magnitude ``a``, and the update is

    u = step_mult * exp(s_t) * d * exp(exp_mult * a).

**Initialisation** (``init_meta_params``). Every member of the bank is ``per_param_mlp.init``: two
hidden units per layer carry ``m_1 / sqrt(v_D)`` through, so ``d`` is the normalised momentum-Adam
direction plus a small random function of the features. The softmax weights sum to 1, so every mix
keeps that pass-through exactly. The heads ``W_w, w_s`` start at ``HEAD_INIT_SCALE`` times a normal
of variance ``1 / lstm_hidden_size`` and their biases at 0: the mixing starts near uniform and the
step near ``step_mult``, while the statistics and the loss still move them a little (so the
meta-gradient reaches the LSTM). The LSTM and the context layer are normal, variance ``1 / fan_in``.

**Differences from VeLO** (LSTM 512, 256 bases, MLP 2x4): small defaults (LSTM 32, 8 bases, MLP
2x4); the mixing is a softmax (convex) rather than an unconstrained linear combination, so the
initial rule is exact and the size of the step is the step head's job alone; steps are not
multiplied by the parameter's RMS; the LSTM starts from a zero state; the time and loss features
are this library's.

State: an ``r x c`` matrix keeps ``K r c + D (r + c) + 2 lstm_hidden_size`` float32 numbers (Adam
keeps ``2 r c``); the loss, ``2 + 2 L`` more in all.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt import loss_features, lstm, mlp_kernels, per_param_mlp
from lopt.accumulators import (init_momenta, init_second_moments, update_momenta,
                               update_second_moments)
from lopt.features import (accumulator_features, adam_feature_index, mlp_inputs,
                           num_moment_features, time_features)
from lopt.tree_utils import map_leaves

# Scale of the log-RMS and log-size inputs of the LSTM (keeps them of order 1).
LOG_RMS_SCALE = 0.1
# Added to a mean square before its log: RMS down to 1e-10 is told apart.
_TINY = 1e-20
# Ranks 0..MAX_RANK are one-hot encoded; higher ranks read as MAX_RANK.
MAX_RANK = 4
# Scale of the random output heads at initialisation, relative to a variance 1 / fan_in normal.
HEAD_INIT_SCALE = 0.01


class VeLOLOptState(NamedTuple):
  """Optimizer state, arrays only.

  ``momenta``: per parameter, shape ``(K,) + p.shape``. ``second_moments``: per parameter, the
  factored accumulators of ``lopt.accumulators``. ``lstm_state``: the per-tensor LSTM state, shape
  ``(number of tensors, lstm_hidden_size)`` each, rows in the order of ``jax.tree.leaves(params)``.
  ``loss_state``: the ``lopt.loss_features`` state.
  """
  momenta: Any
  second_moments: Any
  lstm_state: lstm.LSTMState
  loss_state: loss_features.LossState
  step: jax.Array
  num_steps: jax.Array


def _linear(layer: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  return x @ layer["w"] + layer["b"]


def _normal_linear(key: jax.Array, shape: tuple[int, ...], scale: float = 1.0
                   ) -> dict[str, jax.Array]:
  """A layer ``{"w": shape, "b": shape[1:]}``: normal weights of variance ``scale^2 / shape[0]``."""
  return {"w": scale * jax.random.normal(key, shape) / np.sqrt(shape[0]),
          "b": jnp.zeros(shape[1:])}


def _shape_features(shape: tuple[int, ...]) -> np.ndarray:
  """One-hot rank (axes longer than 1, capped at ``MAX_RANK``) and ``LOG_RMS_SCALE * log(size)``."""
  rank = min(sum(d > 1 for d in shape), MAX_RANK)
  return np.concatenate([np.eye(MAX_RANK + 1)[rank],
                         [LOG_RMS_SCALE * np.log(max(np.prod(shape), 1))]]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class VeLOLOpt:
  """VeLO-style learned optimizer; see the module docstring for the maths.

  ``lstm_hidden_size``: the per-tensor LSTM; ``num_bases``: MLPs in the bank; ``hidden_size`` and
  ``num_hidden_layers``: each per-parameter MLP; ``loss_decays``: the loss averages the LSTM reads;
  ``mlp_kernel``: how each tensor's MLP runs (``lopt.mlp_kernels``).
  """

  lstm_hidden_size: int = 32
  num_bases: int = 8
  hidden_size: int = 4
  num_hidden_layers: int = 2
  momentum_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
  second_moment_decays: tuple[float, ...] = (0.99, 0.999)
  time_scales: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
  loss_decays: tuple[float, ...] = (0.5, 0.9, 0.99)
  step_mult: float = 1e-3
  exp_mult: float = 0.1
  mlp_kernel: str = "auto"

  name: ClassVar[str] = "velo_lstm"
  reads_loss: ClassVar[bool] = True

  def __post_init__(self):
    per_param_mlp.check_size("VeLOLOpt", self.hidden_size, self.num_hidden_layers)
    if self.lstm_hidden_size < 1 or self.num_bases < 1:
      raise ValueError(f"VeLOLOpt needs lstm_hidden_size >= 1 and num_bases >= 1, got "
                       f"lstm_hidden_size={self.lstm_hidden_size}, num_bases={self.num_bases}")
    if not self.momentum_decays or not self.second_moment_decays:
      raise ValueError("VeLOLOpt needs at least one momentum decay and one second-moment decay")
    mlp_kernels.check(self.mlp_kernel, "float32", self.hidden_size)

  @property
  def num_features(self) -> int:
    """Per-parameter features, the input of the per-parameter MLP."""
    return num_moment_features(len(self.momentum_decays), len(self.second_moment_decays))

  @property
  def num_tensor_features(self) -> int:
    """Per-tensor features ``x_t``, the LSTM's input besides the context ``c``."""
    return (self.num_features + MAX_RANK + 2 + len(self.time_scales)
            + 2 * len(self.loss_decays))

  @property
  def flops_per_parameter(self) -> int:
    """FLOPs of the generated MLP for one parameter (the lower bound of the update's cost)."""
    return per_param_mlp.flops_per_parameter(self.num_features, self.hidden_size,
                                             self.num_hidden_layers)

  def init_meta_params(self, key: jax.Array) -> dict[str, Any]:
    bank_key, context_key, lstm_key, mixing_key, step_key = jax.random.split(key, 5)
    adam_index = adam_feature_index(len(self.momentum_decays), len(self.second_moment_decays))
    init_member = lambda k: per_param_mlp.init(k, self.num_features, self.hidden_size,
                                               self.num_hidden_layers, adam_index)
    hidden, inputs = self.lstm_hidden_size, self.num_tensor_features
    return {
        "bank": jax.vmap(init_member)(jax.random.split(bank_key, self.num_bases)),
        "context": _normal_linear(context_key, (inputs, hidden)),
        "lstm": lstm.init(lstm_key, inputs + hidden, hidden),
        "mixing": _normal_linear(mixing_key, (hidden, self.num_bases), HEAD_INIT_SCALE),
        "step_size": _normal_linear(step_key, (hidden,), HEAD_INIT_SCALE),
    }

  def init(self, theta, params, num_steps, roles=None) -> VeLOLOptState:
    del theta, roles  # The state does not depend on them.
    return VeLOLOptState(
        momenta=jax.tree.map(lambda p: init_momenta(p, len(self.momentum_decays)), params),
        second_moments=jax.tree.map(
            lambda p: init_second_moments(p, len(self.second_moment_decays)), params),
        lstm_state=lstm.zero_state(len(jax.tree.leaves(params)), self.lstm_hidden_size),
        loss_state=loss_features.init(len(self.loss_decays)),
        step=jnp.zeros((), jnp.int32),
        num_steps=jnp.asarray(num_steps, jnp.int32))

  def _controls(self, theta, tensor_inputs: jax.Array, state: lstm.LSTMState
                ) -> tuple[jax.Array, jax.Array, lstm.LSTMState]:
    """Mixing weights ``(N, B)``, log step sizes ``(N,)`` and the next LSTM state for ``N``
    tensors with inputs ``x``, shape ``(N, num_tensor_features)``."""
    context = jnp.max(jax.nn.relu(_linear(theta["context"], tensor_inputs)), axis=0)
    context = jnp.broadcast_to(context, tensor_inputs.shape[:1] + context.shape)
    hidden, state = lstm.apply(theta["lstm"], jnp.concatenate([tensor_inputs, context], -1), state)
    mixing = jax.nn.softmax(_linear(theta["mixing"], hidden), axis=-1)
    return mixing, _linear(theta["step_size"], hidden), state

  def update(self, theta, opt_state: VeLOLOptState, grads, params, loss=None):
    loss_state = loss_features.update(opt_state.loss_state, loss, self.loss_decays)
    shared = jnp.concatenate([time_features(opt_state.step, opt_state.num_steps, self.time_scales),
                              loss_features.features(loss_state)])

    def accumulate(p, g, m, moments):
      g32 = g.astype(jnp.float32)
      m = update_momenta(m, g32, self.momentum_decays)
      moments, _ = update_second_moments(moments, jnp.square(g32), self.second_moment_decays)
      inputs, mean_square = mlp_inputs(accumulator_features,
                                       (p.astype(jnp.float32), g32, m, moments))
      tensor_inputs = jnp.concatenate([LOG_RMS_SCALE * 0.5 * jnp.log(mean_square + _TINY),
                                       _shape_features(p.shape), shared])
      return inputs, tensor_inputs, m, moments

    inputs, tensor_inputs, momenta, second_moments = map_leaves(
        accumulate, params, grads, opt_state.momenta, opt_state.second_moments)
    mixing, log_steps, lstm_state = self._controls(
        theta, jnp.stack(jax.tree.leaves(tensor_inputs)), opt_state.lstm_state)

    def step_leaf(p, x, mix, log_step):
      mlp = jax.tree.map(lambda w: jnp.tensordot(mix, w, axes=1), theta["bank"])
      (out,) = mlp_kernels.apply_to_tensors(mlp, [x], self.mlp_kernel)
      step = per_param_mlp.update_from_output(out, self.step_mult * jnp.exp(log_step),
                                              self.exp_mult)
      return (step.astype(p.dtype),)

    treedef = jax.tree.structure(params)
    (updates,) = map_leaves(step_leaf, params, inputs, treedef.unflatten(list(mixing)),
                            treedef.unflatten(list(log_steps)))
    new_state = VeLOLOptState(momenta, second_moments, lstm_state, loss_state,
                              opt_state.step + 1, opt_state.num_steps)
    return updates, new_state
