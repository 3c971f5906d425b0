"""Evaluation: train held-out tasks with an optax transformation and with Adam tuned on a grid.

``train_population`` trains one task per key with any optax transformation (a loaded learned
optimizer included) in one ``vmap``-ed, ``jit``-ed program and returns the loss curves and the final
metrics on every split. ``tune_adam`` runs the same tasks with Adam at every learning rate of a log
grid (one more ``vmap`` axis) and keeps the learning rate with the lowest mean final training loss.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metatrain.unroll import init_inner_state, unroll
from tasks import SPLITS, TaskFamily

EVAL_SEED_OFFSET = 1_000_003  # Evaluation tasks use seeds far from the meta-training seeds.


def eval_keys(seed: int, num_seeds: int) -> jax.Array:
  """Keys of the held-out evaluation tasks (never used in meta-training)."""
  return jax.random.split(jax.random.PRNGKey(EVAL_SEED_OFFSET + seed), num_seeds)


def _train_one(family: TaskFamily, tx: optax.GradientTransformationExtraArgs, key: jax.Array,
               num_steps: int) -> dict[str, jax.Array]:
  state = init_inner_state(family, tx, key)
  state, losses = unroll(family, tx, state, num_steps)
  task = family.task(state.task_params)
  final = {f"{split}_{name}": value for split in SPLITS
           for name, value in task.evaluate(state.params, split).items()}
  return {"losses": losses["train"], **final}


def train_population(family: TaskFamily, tx: optax.GradientTransformationExtraArgs,
                     keys: jax.Array, num_steps: int) -> dict[str, np.ndarray]:
  """Trains one task per key for ``num_steps`` steps; arrays have the keys as leading axis."""
  run = jax.jit(jax.vmap(lambda k: _train_one(family, tx, k, num_steps)))
  return jax.tree.map(np.asarray, run(keys))


def tune_adam(family: TaskFamily, keys: jax.Array, num_steps: int,
              learning_rates: tuple[float, ...]) -> dict[str, Any]:
  """Runs Adam at every learning rate on every task; returns the grid and the best run.

  The best learning rate minimises the mean (over tasks) final training loss; a diverged run
  (non-finite loss) never wins.
  """
  def run_at(learning_rate):
    return jax.vmap(lambda k: _train_one(family, optax.adam(learning_rate), k, num_steps))(keys)

  grid = jax.tree.map(np.asarray, jax.jit(jax.vmap(run_at))(jnp.asarray(learning_rates)))
  score = np.nan_to_num(grid["train_loss"].mean(axis=1), nan=np.inf)
  best = int(np.argmin(score))
  return {"learning_rates": list(learning_rates), "mean_final_train_loss": score.tolist(),
          "best_learning_rate": learning_rates[best],
          "best": jax.tree.map(lambda a: a[best], grid)}


def summarize(results: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """Mean and standard deviation over tasks of every final metric."""
  return {name: {"mean": float(np.mean(value)), "std": float(np.std(value))}
          for name, value in results.items() if name != "losses"}
