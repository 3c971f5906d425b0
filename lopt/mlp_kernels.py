"""How the per-parameter MLP runs over a model's tensors: the ``mlp_kernel`` setting of the LOs.

Every per-parameter learned optimizer computes, for each tensor, a list of network inputs (one
array shaped like the tensor per feature, or a scalar for a per-tensor constant such as a time
feature) and turns the network's outputs into the update. The network itself runs in one of:

* ``"elementwise"``: per tensor, the network as scalar-weight multiply-adds over whole arrays
  (``per_param_mlp.apply_elementwise``), which XLA fuses with the features before it and the
  update after it into one loop; nothing of size ``(N, F)`` or ``(N, H)`` reaches memory.
* ``"xla"``: the inputs of all tensors stacked into rows, concatenated into one ``(N, F)`` matrix
  and run as one chain of XLA matmuls (``per_param_mlp.apply``): one kernel launch per layer for the
  whole model, which on an accelerator beats one fusion per tensor when tensors are many and small.
* ``"pallas"``: the same rows through the fused Pallas kernel of ``lopt.fused_mlp`` (GPUs).
* ``"auto"`` (the default): ``AUTO[backend]``, the fastest measured on that backend
  (``benchmarks/lo_step_cost.py``, rows in ``benchmarks/RESULTS.md``), ``"xla"`` where none was;
  with ``"elementwise"`` there, only for tensors of at least ``ELEMENTWISE_MIN_SIZE`` entries,
  the others going through the matmuls together: XLA compiles the elementwise network slowly
  (about 5 s per tensor for the 32x2 MLP LO on a 2-core CPU, whatever the tensor's size: one
  tensor 4.7 s, four 21 s), which pays off only where the tensor is large.

All give the same function up to the order of float additions (``tests/test_lopt.py``).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lopt import fused_mlp, per_param_mlp

KERNELS = ("auto", "elementwise", "xla", "pallas")
# The kernel "auto" picks per backend. On the 2-core CPU of benchmarks/RESULTS.md the elementwise
# network made the whole update at 1M parameters 3.2x faster for the 32x2 MLP LO (its network at
# 27 % of the CPU's matmul rate, against 8.7 % as matmuls 14 features wide), 3.9x for the Adafac
# LO; forced on the quickstart's digits MLPs it made PES at population 32 1.7x faster (but "auto"
# leaves tensors that small to the matmuls, for compile time). GPUs keep the matmuls until the
# elementwise network is timed there.
AUTO = {"cpu": "elementwise"}
# The smallest tensor "auto" runs elementwise (a 256 x 256 matrix). The MLP LO's update of a
# 4-tensor digits MLP compiled in 4 s with matmuls and 55 s elementwise; at 1M parameters the
# elementwise update saves ~0.1 s per step.
ELEMENTWISE_MIN_SIZE = 65536

TensorInputs = Sequence[jax.Array]


def resolve(kernel: str) -> str:
  """The concrete kernel ``kernel`` names on the default backend (``"auto"`` -> ``AUTO``)."""
  return AUTO.get(jax.default_backend(), "xla") if kernel == "auto" else kernel


def check(kernel: str, dtype: str, hidden_size: int) -> None:
  """``ValueError`` naming the problem and the valid choices unless ``kernel`` can run a network of
  ``hidden_size`` units computing in ``dtype``."""
  per_param_mlp.compute_dtype(dtype)
  if kernel not in KERNELS:
    raise ValueError(f"unknown MLP kernel '{kernel}'; valid: {', '.join(KERNELS)}")
  if kernel == "pallas":
    fused_mlp.check(dtype, hidden_size)


def tensor_shape(inputs: TensorInputs) -> tuple[int, ...]:
  """The shape of the tensor whose inputs are ``inputs``: theirs, broadcast together."""
  return jnp.broadcast_shapes(*(jnp.shape(x) for x in inputs))


def stack_rows(inputs: TensorInputs) -> jax.Array:
  """One tensor's inputs as rows: shape ``(|p|, F)``, scalars broadcast to the tensor's shape."""
  shape = tensor_shape(inputs)
  return jnp.stack([jnp.broadcast_to(x, shape) for x in inputs], axis=-1).reshape(-1, len(inputs))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def elementwise(theta: per_param_mlp.MLPParams, inputs: list[jax.Array], dtype: str
                ) -> list[jax.Array]:
  """``per_param_mlp.apply_elementwise``, differentiated as the matmul network.

  Autodiff of the elementwise form would give one reduction over the tensor per weight (the
  cotangent of ``w_ij`` is ``sum(x_i * dh_j)``) and, through truncated backprop's unrolls, graphs
  that took minutes and gigabytes to compile; the backward pass here stacks the inputs into rows
  and pulls the cotangents back through ``per_param_mlp.apply``, two matmuls per layer.
  """
  return per_param_mlp.apply_elementwise(theta, inputs, dtype)


def _elementwise_forward(theta, inputs, dtype):
  return elementwise(theta, inputs, dtype), (theta, inputs)


def _elementwise_backward(dtype, residuals, cotangents):
  theta, inputs = residuals
  shape = tensor_shape(inputs)
  _, pullback = jax.vjp(functools.partial(per_param_mlp.apply, dtype=dtype), theta,
                        stack_rows(inputs))
  theta_cotangent, rows_cotangent = pullback(stack_rows(cotangents))
  input_cotangents = [_sum_to_shape(rows_cotangent[:, i].reshape(shape), jnp.shape(x))
                      for i, x in enumerate(inputs)]
  return theta_cotangent, input_cotangents


elementwise.defvjp(_elementwise_forward, _elementwise_backward)


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``x`` summed over the axes along which an array of ``shape`` was broadcast to ``x.shape``."""
  leading = x.ndim - len(shape)
  axes = tuple(range(leading)) + tuple(
      leading + i for i, size in enumerate(shape) if size == 1 and x.shape[leading + i] != 1)
  return jnp.sum(x, axis=axes, keepdims=True).reshape(shape) if axes else x


def apply_to_tensors(theta: per_param_mlp.MLPParams, inputs: Sequence[TensorInputs],
                     kernel: str = "auto", dtype: str = "float32") -> list[list[jax.Array]]:
  """The network's outputs for every tensor: ``outputs[t][o]`` is output ``o`` shaped like tensor
  ``t``, whose inputs are ``inputs[t]`` (see the module docstring for the kernels)."""
  concrete = resolve(kernel)
  if concrete == "elementwise":
    large = [kernel != "auto" or np.prod(tensor_shape(x)) >= ELEMENTWISE_MIN_SIZE
             for x in inputs]
    rows = iter(_rows_network(theta, [x for x, big in zip(inputs, large) if not big], "xla",
                              dtype))
    return [elementwise(_private_copy(theta, t), list(x), dtype) if big else next(rows)
            for t, (x, big) in enumerate(zip(inputs, large))]
  return _rows_network(theta, inputs, concrete, dtype)


def _private_copy(theta: per_param_mlp.MLPParams, tensor_index: int) -> per_param_mlp.MLPParams:
  """``theta`` as a value of tensor ``tensor_index``'s own, opaque to XLA.

  Loops that read the same ``theta`` are merged by XLA into one multi-output loop, and LLVM's
  compile time grows faster than linearly in a loop's size: the elementwise networks of two
  same-shaped tensors compiled in 20 s and 2.7 GB together, 8 s and 0.5 GB apart.
  """
  return jax.lax.optimization_barrier((theta, np.int32(tensor_index)))[0]


def _rows_network(theta: per_param_mlp.MLPParams, inputs: Sequence[TensorInputs], kernel: str,
                  dtype: str) -> list[list[jax.Array]]:
  """``apply_to_tensors`` for the row kernels (``"xla"``, ``"pallas"``): all tensors' rows in one
  ``(N, F)`` matrix through the network."""
  if not inputs:
    return []
  network = fused_mlp.apply if kernel == "pallas" else functools.partial(per_param_mlp.apply,
                                                                        dtype=dtype)
  shapes = [tensor_shape(tensor) for tensor in inputs]
  rows = jnp.concatenate([stack_rows(tensor) for tensor in inputs])
  splits = np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1]
  outputs = jnp.split(network(theta, rows), splits)
  return [[out[:, o].reshape(shape) for o in range(out.shape[1])]
          for out, shape in zip(outputs, shapes)]


def tensor_updates(theta: per_param_mlp.MLPParams, params, inputs, step_mult: float,
                   exp_mult: float, kernel: str = "auto", dtype: str = "float32"):
  """The update ``per_param_mlp.update_from_output`` of every tensor of ``params`` from its inputs
  (a pytree like ``params`` whose leaves are lists of inputs), cast to its parameter's dtype."""
  treedef = jax.tree.structure(params)
  outputs = apply_to_tensors(theta, treedef.flatten_up_to(inputs), kernel, dtype)
  return treedef.unflatten([
      per_param_mlp.update_from_output(out, step_mult, exp_mult).astype(p.dtype)
      for out, p in zip(outputs, treedef.flatten_up_to(params))])
