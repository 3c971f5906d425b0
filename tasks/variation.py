"""Per-task variations of the data, drawn as arrays so that a population of tasks is a ``vmap`` axis.

A family with settings ``min_subset``, ``label_noise`` and ``input_scale`` draws, per task:

- ``subset_start``, ``subset_size``: the task trains on the ``subset_size`` consecutive examples
  (cyclically) from ``subset_start`` of the stored training split, ``subset_size / N`` uniform in
  ``[min_subset, 1]``; the split is stored shuffled, so this is a random subset;
- ``label_noise``: probability, uniform in ``[0, label_noise]``, that a training label drawn in a
  batch is replaced by a uniformly random class;
- ``input_scale``: a factor on the inputs, log-uniform in ``[1 / input_scale, input_scale]``.

With the defaults (1, 0, 1) every task sees the same data. Each function makes one call to the
random number generator: on a CPU every call costs compile time, in every ``jit`` of a training.
"""

import jax
import jax.numpy as jnp


def check_settings(min_subset: float, label_noise: float, input_scale: float) -> None:
  if not 0.0 < min_subset <= 1.0:
    raise ValueError(f"min_subset must be in (0, 1], got {min_subset}")
  if not 0.0 <= label_noise <= 1.0:
    raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
  if input_scale < 1.0:
    raise ValueError(f"input_scale must be >= 1 (tasks draw from [1/s, s]), got {input_scale}")


def _below(u: jax.Array, n) -> jax.Array:
  """``floor(u * n)`` as int32 for ``u`` uniform in [0, 1): uniform over ``0 .. n - 1``."""
  return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def sample(key: jax.Array, num_examples: int, min_subset: float, label_noise: float = 0.0,
           input_scale: float = 1.0) -> dict[str, jax.Array]:
  """Draws one task's variations of a training split of ``num_examples``; see the module docstring."""
  u = jax.random.uniform(key, (4,))
  fraction = min_subset + (1.0 - min_subset) * u[0]
  log_scale = jnp.log(input_scale)
  return {"subset_start": _below(u[1], num_examples),
          "subset_size": jnp.clip(jnp.round(fraction * num_examples), 1,
                                  num_examples).astype(jnp.int32),
          "label_noise": label_noise * u[2],
          "input_scale": jnp.exp(log_scale * (2.0 * u[3] - 1.0))}


def _in_subset(u: jax.Array, task_params: dict, num_examples: int) -> jax.Array:
  """Indices, uniform over the task's subset, of the uniform draws ``u`` in [0, 1)."""
  return (task_params["subset_start"] + _below(u, task_params["subset_size"])) % num_examples


def subset_indices(key: jax.Array, task_params: dict, num_examples: int,
                   batch_size: int) -> jax.Array:
  """``batch_size`` indices drawn with replacement from the task's subset."""
  return _in_subset(jax.random.uniform(key, (batch_size,)), task_params, num_examples)


def training_draw(key: jax.Array, task_params: dict, num_examples: int, batch_size: int,
                  num_classes: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Indices of one labelled training batch, drawn as ``subset_indices``, and its label noise.

  Returns ``(indices, replace, classes)``: example ``b`` is ``indices[b]``; where ``replace[b]``
  (probability ``label_noise``) its label is to be replaced by ``classes[b]``, uniform over classes.
  """
  u = jax.random.uniform(key, (3, batch_size))
  return (_in_subset(u[0], task_params, num_examples), u[1] < task_params["label_noise"],
          _below(u[2], num_classes))
