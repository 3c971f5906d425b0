"""The population sharded over every device of every host, with JAX's own machinery.

A one-axis mesh named ``pop`` spans all devices (``jax.devices()`` lists those of every process once
``jax.distributed`` is initialised). Estimator-state leaves whose leading axis is the population are
split along ``pop``; theta and the meta-optimizer state are replicated. ``jit`` then partitions the
vmapped population (GSPMD), and the population averages of the estimators become cross-device
reductions, so the same program runs on one CPU, eight GPUs or a multi-host TPU slice. Random
numbers do not depend on the sharding (JAX's partitionable threefry), so the result does not depend on
the number of devices beyond float summation order.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metatrain.config import ConfigError

POP_AXIS = "pop"


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins a multi-process run (one process per host); a no-op for a single process.

  On CPU the processes exchange data with gloo collectives, so several processes can be tested on one
  machine over 127.0.0.1.
  """
  if num_processes <= 1:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # Only CPU devices read it.
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)


def population_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (POP_AXIS,))


def check_population(slice_sizes: tuple[int, ...], mesh: Mesh) -> None:
  """Every slice of the population (one per mixture member) must split evenly over the devices."""
  if any(size % mesh.size for size in slice_sizes):
    what = (f"population ({slice_sizes[0]})" if len(slice_sizes) == 1 else
            f"population's mixture slices {tuple(slice_sizes)}")
    raise ConfigError(f"the {what} must be a multiple of the number of devices ({mesh.size}) it "
                      "is sharded over")


def population_shardings(tree, population: int, mesh: Mesh):
  """Shardings for ``tree`` (arrays or shapes): leading population axis over ``pop``, rest replicated."""
  split = NamedSharding(mesh, PartitionSpec(POP_AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.tree.map(lambda x: split if x.ndim >= 1 and x.shape[0] == population else replicated,
                      tree)


def replicated_shardings(tree, mesh: Mesh):
  return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)


def put_replicated(tree, mesh: Mesh):
  """``tree`` copied whole to every device of ``mesh``, each distinct array once: leaves that are
  the same array (a dataset that several mixture members read) share one copy."""
  leaves, treedef = jax.tree.flatten(tree)
  replicated = NamedSharding(mesh, PartitionSpec())
  copies = {}
  for leaf in leaves:
    if id(leaf) not in copies:
      copies[id(leaf)] = jax.device_put(leaf, replicated)
  return treedef.unflatten([copies[id(leaf)] for leaf in leaves])
