"""The per-parameter network as one fused Pallas kernel: hidden activations never leave the chip.

``per_param_mlp.apply`` on rows ``x`` of shape ``(N, F)`` runs as XLA matmuls, and each hidden layer's
``(N, H)`` activations go to memory and back: with ``H = 32`` that is ``4 * 32 * 2`` bytes per layer
and parameter, against ``4 * F`` for the features. On a GPU this traffic, not the FLOPs, bounds the
update (``benchmarks/lo_update_breakdown.py``). ``apply`` here computes the same function with one
kernel: each program loads a block of rows, runs every layer on it in registers and writes only the
two outputs ``(d, a)``, so memory sees ``4 * (F + 2)`` bytes per parameter.

The kernel is written with ``jax.experimental.pallas`` for its Triton backend (chosen by its
``CompilerParams``; JAX's default GPU backend, Mosaic GPU, copies at most 256 rows at a time): on a
GPU it compiles through Triton, on a CPU it runs in Pallas's interpreter (correct, slow: for tests).
On a GPU its float32 matmuls, like XLA's, run in TF32 by default (products rounded to ~1e-3).
Triton's arrays have power-of-two sides and its matmuls sides of at least 16, so the feature axis is
zero-padded to a power of two of at least 16 (zero rows of the first weight matrix make the padding
inert); the output layer is two dot products per row rather than a matmul, and its bias is added
outside.
Gradients (TBPTT through the optimizer) take the XLA network's: ``apply`` is a ``custom_vjp`` whose
backward pass differentiates ``per_param_mlp.apply``.
"""

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pallas_triton

from lopt import per_param_mlp

# Rows per kernel program.
BLOCK_ROWS = 512
# Triton's smallest matmul side.
_MIN_DOT = 16


def check(dtype: str, hidden_size: int) -> None:
  """``ValueError`` unless the kernel can run a network computing in ``dtype`` with ``hidden_size``
  units: float32, a hidden size that is a power of two of at least 16 (Triton's smallest matmul
  tile)."""
  if dtype != "float32":
    raise ValueError(f"the fused Pallas network computes in float32, got mlp_dtype='{dtype}'")
  if hidden_size < _MIN_DOT or hidden_size & (hidden_size - 1):
    raise ValueError(f"the fused Pallas network needs a hidden size that is a power of two and at "
                     f"least {_MIN_DOT}, got {hidden_size}; use mlp_kernel='elementwise' or 'xla'")


def interpret() -> bool:
  """Whether the kernel runs in Pallas's interpreter: on a CPU, which Triton does not target."""
  return jax.default_backend() == "cpu"


def _kernel(x_ref, *refs):
  """One block of rows through all layers. ``refs`` are ``w_i, b_i`` per hidden layer, the output
  layer's two weight rows ``(1, H)`` (direction, log-magnitude), then the two output blocks."""
  *hidden, w_direction_ref, w_magnitude_ref, direction_ref, magnitude_ref = refs
  h = x_ref[...]
  for w_ref, b_ref in zip(hidden[::2], hidden[1::2]):
    h = jnp.maximum(jnp.dot(h, w_ref[...], preferred_element_type=jnp.float32) + b_ref[...], 0.0)
  direction_ref[...] = jnp.sum(h * w_direction_ref[...], axis=1)
  magnitude_ref[...] = jnp.sum(h * w_magnitude_ref[...], axis=1)


def _fused_apply(theta: per_param_mlp.MLPParams, x: jax.Array) -> jax.Array:
  """The kernel on ``x`` padded to whole blocks of rows and a power of two of features."""
  num_rows, num_features = x.shape
  layers = [theta[f"linear_{i}"] for i in range(len(theta))]
  padded_features = max(_MIN_DOT, 1 << (num_features - 1).bit_length())
  padded_rows = BLOCK_ROWS * -(-num_rows // BLOCK_ROWS)
  x = jnp.pad(x.astype(jnp.float32),
              ((0, padded_rows - num_rows), (0, padded_features - num_features)))
  # The first layer's zero rows for the padded features make the padding inert.
  operands = []
  for i, layer in enumerate(layers[:-1]):
    w = layer["w"] if i else jnp.pad(layer["w"], ((0, padded_features - num_features), (0, 0)))
    operands += [w.astype(jnp.float32), layer["b"].astype(jnp.float32)[None, :]]
  w_out = layers[-1]["w"].astype(jnp.float32)
  operands += [w_out[:, 0][None, :], w_out[:, 1][None, :]]
  whole = lambda a: pl.BlockSpec(a.shape, lambda i: (0, 0))
  rows = pl.BlockSpec((BLOCK_ROWS,), lambda i: (i,))
  direction, magnitude = pl.pallas_call(
      _kernel,
      out_shape=[jax.ShapeDtypeStruct((padded_rows,), jnp.float32)] * 2,
      grid=(padded_rows // BLOCK_ROWS,),
      in_specs=[pl.BlockSpec((BLOCK_ROWS, padded_features), lambda i: (i, 0))]
               + [whole(a) for a in operands],
      out_specs=[rows, rows],
      compiler_params=pallas_triton.CompilerParams(),
      interpret=interpret(),
  )(x, *operands)
  out = jnp.stack([direction[:num_rows], magnitude[:num_rows]], axis=-1)
  return out + layers[-1]["b"].astype(jnp.float32)


@jax.custom_vjp
def apply(theta: per_param_mlp.MLPParams, x: jax.Array) -> jax.Array:
  """``per_param_mlp.apply(theta, x)`` (float32) for rows ``x`` of shape ``(N, F)``, in one kernel."""
  return _fused_apply(theta, x)


def _apply_forward(theta, x):
  return _fused_apply(theta, x), (theta, x)


def _apply_backward(residuals, cotangent):
  theta, x = residuals
  _, pullback = jax.vjp(per_param_mlp.apply, theta, x)
  return pullback(cotangent)


apply.defvjp(_apply_forward, _apply_backward)
