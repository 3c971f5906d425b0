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

from collections.abc import Sequence

import jax
import jax.numpy as jnp

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


def apply_elementwise(theta: MLPParams, inputs: Sequence[jax.Array], dtype: str = "float32"
                      ) -> list[jax.Array]:
  """``apply`` with its inputs given feature by feature: ``inputs[i]`` holds feature ``i`` of every
  row, as arrays that broadcast to one shape (a per-tensor constant such as a time feature may be a
  scalar); returns one array per output.

  Every unit is written as scalar-weight multiply-adds over whole arrays,

      h_j = relu(b_j + sum_i w_ij x_i),

  so the network is one elementwise computation that XLA fuses with the features before it and the
  update after it into a single loop over the tensor: no ``(N, F)`` feature matrix or ``(N, H)``
  activation matrix is written to memory, and the loop's work is the network's FLOPs (whereas
  ``apply``'s matmuls, with inner dimensions of ~10-32, use a small fraction of the machine's
  matmul rate). Inputs that are scalars add to the bias once per tensor, not once per row. Same
  function as ``apply`` up to the order of float additions.
  """
  dtype = compute_dtype(dtype)
  values = [x.astype(dtype) for x in inputs]
  num_layers = len(theta)
  for i in range(num_layers):
    w, b = (theta[f"linear_{i}"][k].astype(dtype) for k in ("w", "b"))
    # Scalars first: their sum with the bias is computed once, not per row.
    order = sorted(range(len(values)), key=lambda k: values[k].ndim)
    units = []
    for j in range(w.shape[1]):
      unit = b[j]
      for k in order:
        unit = unit + w[k, j] * values[k]
      units.append(jax.nn.relu(unit) if i < num_layers - 1 else unit)
    values = units
  return [v.astype(jnp.float32) for v in values]


def update_from_output(outputs: Sequence[jax.Array], step_mult, exp_mult: float) -> jax.Array:
  """``step_mult * d * exp(exp_mult * a)`` with ``d, a = outputs``."""
  direction, log_magnitude = outputs
  return step_mult * direction * jnp.exp(exp_mult * log_magnitude)


def flops_per_parameter(num_features: int, hidden_size: int, num_hidden_layers: int,
                        num_outputs: int = 2) -> int:
  """The network's multiply-adds for one parameter, 2 FLOPs each (biases and ReLUs not counted)."""
  sizes = [num_features] + [hidden_size] * num_hidden_layers + [num_outputs]
  return sum(2 * fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
