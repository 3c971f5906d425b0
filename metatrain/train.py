"""The outer loop: meta-train a learned optimizer's theta from a config, with checkpoints and logs.

Read top to bottom: build the task family, the learned optimizer, the estimator and the
meta-optimizer (``metatrain.meta_optimizer``) from the config; copy the family's datasets to every
device once (they are an argument of every jitted step, never part of the checkpointed state);
start (or restore from the last orbax checkpoint) the meta-training state; then each outer step
draws its key from the step number, estimates the meta-gradient over the population, updates
theta, scores it on validation tasks every ``config.eval.validate_every`` steps (keeping the best,
``metatrain.selection``), logs and checkpoints. With ``config.outer.max_seconds`` set, the loop
stops early once this process has spent that long (checkpointing the step it stopped at), so that
a run fits a machine lent for a while and continues later from there.
Because every key is a function of the seed and the step, a run resumed from a checkpoint writes
exactly the metrics an uninterrupted run writes.
"""

import functools
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from ml_collections import ConfigDict
from tqdm import tqdm

import tasks
from metatrain import sharding
from metatrain.config import (ConfigError, build_lopt, build_task_family, family_members,
                              load_start_theta, population_slice_sizes)
from metatrain.estimators import MixtureEstimator, build_estimator
from metatrain.meta_optimizer import build_meta_optimizer
from metatrain.metrics_log import MetricsLog
from metatrain.selection import Best, Validator, is_validation_step, validation_keys

CHECKPOINT_DIR = "checkpoints"


def _seed_keys(config: ConfigDict) -> tuple[jax.Array, jax.Array]:
  """The keys of a new run's theta and of its population, from ``config.seed``."""
  return tuple(jax.random.split(jax.random.PRNGKey(config.seed)))


def initial_theta(config: ConfigDict, saved=None):
  """The theta a new run starts from: ``saved`` (``load_start_theta``), or a fresh draw."""
  return build_lopt(config).init_meta_params(_seed_keys(config)[0]) if saved is None else saved


def init_state(config: ConfigDict, estimator, meta_optimizer: optax.GradientTransformation,
               data, start_theta=None) -> dict[str, Any]:
  """The state of a new run: theta is ``initial_theta(config, start_theta)``."""
  theta = initial_theta(config, start_theta)
  return {"theta": theta, "meta_opt_state": meta_optimizer.init(theta),
          "estimator_state": estimator.init(theta, data, _seed_keys(config)[1]),
          "step": jnp.zeros((), jnp.int32)}


def state_shardings(estimator, abstract_state: dict[str, Any], mesh) -> dict[str, Any]:
  """The population's inner trainings split over devices; theta and the rest replicated."""
  shardings = sharding.replicated_shardings(abstract_state, mesh)
  estimator_state = abstract_state["estimator_state"]
  if isinstance(estimator, MixtureEstimator):
    shardings["estimator_state"] = tuple(
        sharding.population_shardings(s, member.population, mesh)
        for s, member in zip(estimator_state, estimator.members))
  else:
    shardings["estimator_state"] = sharding.population_shardings(
        estimator_state, estimator.population, mesh)
  return shardings


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """The shape of every array leaf of ``tree``, keyed by its path as stored.

  A checkpoint stores tuples as lists and dataclasses as dicts, so a path is written the same for
  all of them: ``estimator_state/0/horizon``.
  """
  def name(key):
    return str(next(getattr(key, field) for field in ("key", "idx", "name") if hasattr(key, field)))

  return {"/".join(map(name, path)): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _restore(manager: ocp.CheckpointManager, like: dict[str, Any],
             optional: tuple[str, ...] = ()) -> dict[str, Any]:
  """Restores the latest checkpoint into the structure of ``like``, or says why it cannot.

  The stored shapes are compared with ``like``'s first, so that a checkpoint of another config is
  refused before orbax starts reading it. Entries of ``like`` named in ``optional`` that the
  checkpoint lacks (validation turned on when resuming a run without it) are left out of the result.
  """
  step = manager.latest_step()

  def refused(reason: str) -> ConfigError:
    return ConfigError(f"cannot resume from the checkpoint of step {step} in {manager.directory}: "
                       f"it does not fit this config or is damaged ({reason}); pass --overwrite "
                       "to start the run again")

  def unreadable(error: Exception) -> ConfigError:  # orbax raises many types for damaged files.
    return refused(f"{type(error).__name__}: {str(error)[:300]}")

  try:
    stored = _shapes(manager.item_metadata(step))
  except Exception as e:
    raise unreadable(e) from None
  absent = {name for name in optional if not any(p.startswith(f"{name}/") for p in stored)}
  like = {name: value for name, value in like.items() if name not in absent}
  wanted = _shapes(like)
  differences = [f"{path}: stored {stored.get(path, 'nothing')}, this config {shape}"
                 for path, shape in wanted.items() if stored.get(path) != shape]
  differences += [f"{path}: stored {stored[path]}, this config nothing"
                  for path in stored.keys() - wanted.keys()]
  if differences:
    raise refused(f"{len(differences)} arrays differ, e.g. {'; '.join(sorted(differences)[:3])}")
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(like))
  except Exception as e:
    raise unreadable(e) from None


def _time_limit(max_seconds: float) -> Callable[[], bool]:
  """A check of whether ``max_seconds`` (0: no limit) have passed since this call; every process
  of a multi-process run gets process 0's answer, so that all stop at the same step."""
  deadline = time.perf_counter() + max_seconds

  def out_of_time() -> bool:
    if not max_seconds:
      return False
    late = np.bool_(time.perf_counter() >= deadline)
    if jax.process_count() > 1:
      late = multihost_utils.broadcast_one_to_all(late)
    return bool(late)

  return out_of_time


def meta_train(config: ConfigDict, run_dir: Path, show_progress: bool = True) -> dict[str, Any]:
  """Meta-trains to ``config.outer.steps`` outer steps in ``run_dir``; returns the final state.

  The returned state also holds ``seconds``, the wall time of meta-training over all sessions,
  and, with ``config.eval.validate_every > 0``, ``best``: the theta chosen on validation tasks
  (``metatrain.selection``).
  Every process of a multi-process run calls this; only process 0 writes metrics.
  """
  out_of_time = _time_limit(config.outer.max_seconds)  # Building and restoring count too.
  family = build_task_family(config)
  estimator = build_estimator(config, family, build_lopt(config))
  meta_optimizer = build_meta_optimizer(config)
  mesh = sharding.population_mesh()
  sharding.check_population(population_slice_sizes(config), mesh)
  data = family.data()
  data = sharding.put_replicated(data, mesh)
  manager = ocp.CheckpointManager(run_dir.absolute() / CHECKPOINT_DIR,
                                  options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
                                  item_handlers=ocp.StandardCheckpointHandler())
  resuming = manager.latest_step() is not None
  start_theta = None if resuming else load_start_theta(config)
  make_state = lambda data: init_state(config, estimator, meta_optimizer, data, start_theta)
  shardings = state_shardings(estimator, jax.eval_shape(make_state, data), mesh)
  state = jax.jit(make_state, out_shardings=shardings)(data)
  loop_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)

  every, validator, kept = config.eval.validate_every, None, {}
  if every:
    validator = Validator(build_lopt(config), [f for _, f in family_members(family)],
                          config.estimator.horizon,
                          validation_keys(config.seed, config.eval.validation_seeds))
    member_data = data if isinstance(family, tasks.Mixture) else (data,)
    kept["best"] = Best.none_yet(state["theta"])

  seconds = 0.0
  if resuming:
    restored = _restore(manager, {**state, **kept, "seconds": np.zeros((), np.float32)},
                        optional=tuple(kept))
    seconds = float(restored.pop("seconds"))
    kept = {name: restored.pop(name, value) for name, value in kept.items()}
    state = restored
  start = int(state["step"])
  is_writer = jax.process_index() == 0
  log = MetricsLog(run_dir, start, config.to_dict(), config.wandb.enabled and is_writer,
                   config.wandb.project) if is_writer else None

  @functools.partial(jax.jit, out_shardings=(shardings, None), donate_argnums=0)
  def outer_step(state, data):
    key = jax.random.fold_in(loop_key, state["step"])
    grad, estimator_state, metrics = estimator.grad(state["theta"], data,
                                                    state["estimator_state"], key)
    updates, meta_opt_state = meta_optimizer.update(grad, state["meta_opt_state"], state["theta"])
    metrics["grad_norm"] = optax.global_norm(grad)
    return {"theta": optax.apply_updates(state["theta"], updates), "meta_opt_state": meta_opt_state,
            "estimator_state": estimator_state, "step": state["step"] + 1}, metrics

  steps = config.outer.steps
  with tqdm(total=steps, initial=start, desc="meta-training",
            disable=not (show_progress and is_writer), dynamic_ncols=True) as bar:
    for step in range(start + 1, steps + 1):
      started = time.perf_counter()
      state, metrics = outer_step(state, data)
      metrics = {k: float(v) for k, v in metrics.items()}
      if is_validation_step(step, every):
        kept["best"], metrics["validation_score"] = validator.update(
            kept["best"], state["theta"], member_data, step)
      seconds += time.perf_counter() - started
      if log:
        log.write(step, metrics)
      bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}")
      bar.update()
      stop = out_of_time()
      if step % config.checkpoint_every == 0 or step == steps or stop:
        manager.save(step, args=ocp.args.StandardSave(
            {**state, **kept, "seconds": np.asarray(seconds, np.float32)}))
      if stop:
        break
  manager.wait_until_finished()
  manager.close()
  if log:
    log.close()
  return {**state, **kept, "seconds": seconds}
