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
  (``benchmarks/lo_step_cost.py``, rows in ``benchmarks/RESULTS.md``), ``"xla"`` where none was.

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
# network is 2.5x faster than the matmuls for the 32x2 MLP at 1M parameters (3072 FLOPs per
# parameter; the matmuls, 14 features wide, reach ~15 % of the CPU's matmul rate) and more for
# smaller networks. GPUs keep the matmuls until the elementwise network is timed there.
AUTO = {"cpu": "elementwise"}

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


def stack_rows(inputs: TensorInputs) -> jax.Array:
  """One tensor's inputs as rows: shape ``(|p|, F)``, scalars broadcast to the tensor's shape."""
  shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in inputs))
  return jnp.stack([jnp.broadcast_to(x, shape) for x in inputs], axis=-1).reshape(-1, len(inputs))


def apply_to_tensors(theta: per_param_mlp.MLPParams, inputs: Sequence[TensorInputs],
                     kernel: str = "auto", dtype: str = "float32") -> list[list[jax.Array]]:
  """The network's outputs for every tensor: ``outputs[t][o]`` is output ``o`` shaped like tensor
  ``t``, whose inputs are ``inputs[t]`` (see the module docstring for the kernels)."""
  kernel = resolve(kernel)
  if kernel == "elementwise":
    return [per_param_mlp.apply_elementwise(theta, x, dtype) for x in inputs]
  if not inputs:
    return []
  network = fused_mlp.apply if kernel == "pallas" else functools.partial(per_param_mlp.apply,
                                                                        dtype=dtype)
  shapes = [jnp.broadcast_shapes(*(jnp.shape(x) for x in tensor)) for tensor in inputs]
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
