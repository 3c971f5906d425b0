"""The small MLP, shared by all parameters, that turns a parameter's features into its update.

The network maps features ``x`` through ``num_hidden_layers`` ReLU layers to two outputs, a direction
``d`` and a log-magnitude ``a``, and the update is

    u = step_mult * d * exp(exp_mult * a),

with small ``step_mult`` and ``exp_mult`` so that an untrained network takes small steps.

``init`` gives a network that already trains: two hidden units of every layer carry one chosen input
feature ``x_k`` (an Adam-like direction such as ``m / sqrt(v)``) through ``relu(x) - relu(-x) = x``,
and the output reads ``d = relu(-x_k) - relu(x_k) = -x_k``. The other weights are He-normal and the
random part of the output layer is scaled by ``RANDOM_OUTPUT_SCALE``, so at initialisation ``d`` is
``-x_k`` plus a small random function of the features.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Scale of the random part of the output layer at initialisation, relative to the pass-through path.
RANDOM_OUTPUT_SCALE = 0.01

MLPParams = dict[str, dict[str, jax.Array]]

# The dtypes the network may compute in (``apply``).
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_size(owner: str, hidden_size: int, num_hidden_layers: int) -> None:
  """Raises ``ValueError`` when the network is too small to hold the two pass-through units."""
  if hidden_size < 2 or num_hidden_layers < 1:
    raise ValueError(f"{owner} needs hidden_size >= 2 and num_hidden_layers >= 1, got "
                     f"hidden_size={hidden_size}, num_hidden_layers={num_hidden_layers}")


def init(key: jax.Array, num_features: int, hidden_size: int, num_hidden_layers: int,
         passthrough_feature: int, num_outputs: int = 2) -> MLPParams:
  """Returns ``{"linear_i": {"w", "b"}}``; the direction output (the first of ``num_outputs``)
  starts as ``-x[passthrough_feature]``."""
  sizes = [num_features] + [hidden_size] * num_hidden_layers + [num_outputs]
  keys = jax.random.split(key, len(sizes) - 1)
  theta = {}
  for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
    w = jax.random.normal(k, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    is_output = i == len(sizes) - 2
    if is_output:
      w = w * RANDOM_OUTPUT_SCALE
      # direction = relu(-x) - relu(x) = -x, read from the two pass-through units.
      w = w.at[:2, 0].set(jnp.array([-1.0, 1.0]))
    else:
      source = jnp.zeros((fan_in, 2))
      if i == 0:
        source = source.at[passthrough_feature].set(jnp.array([1.0, -1.0]))
      else:
        source = source.at[:2, :2].set(jnp.eye(2))
      w = w.at[:, :2].set(source)
    theta[f"linear_{i}"] = {"w": w, "b": jnp.zeros((fan_out,))}
  return theta


def compute_dtype(name: str) -> jnp.dtype:
  """The dtype ``name`` the network may compute in (``COMPUTE_DTYPES``); ``ValueError`` otherwise."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"unknown MLP compute dtype '{name}'; valid: {', '.join(COMPUTE_DTYPES)}")
  return jnp.dtype(name)


def apply(theta: MLPParams, x: jax.Array, dtype: str = "float32") -> jax.Array:
  """The network's two outputs ``(d, a)`` on the last axis, for inputs ``x`` of shape ``(..., F)``.

  The layers compute in ``dtype``: with ``"bfloat16"`` the inputs, weights and hidden activations
  are bfloat16 (half the memory traffic of the hidden activations, which bounds the cost on an
  accelerator); the outputs are float32 either way.
  """
  dtype = compute_dtype(dtype)
  x = x.astype(dtype)
  num_layers = len(theta)
  for i in range(num_layers):
    layer = theta[f"linear_{i}"]
    x = x @ layer["w"].astype(dtype) + layer["b"].astype(dtype)
    if i < num_layers - 1:
      x = jax.nn.relu(x)
  return x.astype(jnp.float32)


def apply_to_tensors(theta: MLPParams, inputs: list[jax.Array],
                     network: Callable[[MLPParams, jax.Array], jax.Array] = apply
                     ) -> list[jax.Array]:
  """``network`` (``apply`` or another function of the same rows) on every tensor's inputs (shapes
  ``p.shape + (F,)``) in a single call.

  The inputs are flattened to rows, concatenated into one ``(sum_p |p|, F)`` matrix, run through the
  network once and split back. The result is that of ``apply`` per tensor, but the whole pytree
  costs one chain of matmuls instead of one per tensor: on an accelerator a model with dozens of
  small tensors is otherwise bound by per-tensor kernel launches rather than by the MLP's FLOPs.
  """
  if not inputs:
    return []
  rows = jnp.concatenate([x.reshape(-1, x.shape[-1]) for x in inputs])
  splits = np.cumsum([x.size // x.shape[-1] for x in inputs])[:-1]
  outputs = jnp.split(network(theta, rows), splits)
  return [out.reshape(x.shape[:-1] + out.shape[-1:]) for x, out in zip(inputs, outputs)]


def tensor_updates(theta: MLPParams, params, inputs, step_mult: float, exp_mult: float,
                   network: Callable[[MLPParams, jax.Array], jax.Array] = apply):
  """The update of every tensor of ``params`` from its network inputs (a pytree like ``params`` of
  arrays shaped ``p.shape + (F,)``), in one call of ``network`` on all rows
  (``apply_to_tensors``), each cast to its parameter's dtype."""
  treedef = jax.tree.structure(params)
  outputs = apply_to_tensors(theta, treedef.flatten_up_to(inputs), network)
  return treedef.unflatten([update_from_output(out, step_mult, exp_mult).astype(p.dtype)
                            for out, p in zip(outputs, treedef.flatten_up_to(params))])


def update_from_output(out: jax.Array, step_mult: float, exp_mult: float) -> jax.Array:
  """``step_mult * d * exp(exp_mult * a)`` with ``d, a = out[..., 0], out[..., 1]``."""
  direction, log_magnitude = out[..., 0], out[..., 1]
  return step_mult * direction * jnp.exp(exp_mult * log_magnitude)


def flops_per_parameter(num_features: int, hidden_size: int, num_hidden_layers: int,
                        num_outputs: int = 2) -> int:
  """The network's multiply-adds for one parameter, 2 FLOPs each (biases and ReLUs not counted)."""
  sizes = [num_features] + [hidden_size] * num_hidden_layers + [num_outputs]
  return sum(2 * fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
