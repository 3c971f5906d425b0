"""The outer loop: meta-train a learned optimizer's theta from a config, with checkpoints and logs.

Read top to bottom: build the task family, the learned optimizer, the estimator and the
meta-optimizer from the config; start (or restore from the last orbax checkpoint) the meta-training
state; then each outer step draws its key from the step number, estimates the meta-gradient over
the population, updates theta, logs and checkpoints. Because every key is a function of the seed and
the step, a run resumed from a checkpoint writes exactly the metrics an uninterrupted run writes.
"""

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from ml_collections import ConfigDict
from tqdm import tqdm

from metatrain.config import ConfigError, build_lopt, build_task_family
from metatrain.metrics_log import MetricsLog
from metatrain.truncated_es import TruncatedES

CHECKPOINT_DIR = "checkpoints"


def build_estimator(config: ConfigDict) -> TruncatedES:
  est = config.estimator
  return TruncatedES(family=build_task_family(config), lopt=build_lopt(config),
                     population=est.population, unroll_length=est.unroll_length,
                     horizon=est.horizon, sigma=est.sigma, loss_clip=est.loss_clip)


def build_meta_optimizer(config: ConfigDict) -> optax.GradientTransformation:
  """Adam on theta after clipping the meta-gradient; a non-finite meta-gradient is skipped."""
  return optax.apply_if_finite(
      optax.chain(optax.clip_by_global_norm(config.outer.max_grad_norm),
                  optax.adam(config.outer.learning_rate)),
      max_consecutive_errors=10)


def init_state(config: ConfigDict, estimator: TruncatedES,
               meta_optimizer: optax.GradientTransformation) -> dict[str, Any]:
  theta_key, population_key = jax.random.split(jax.random.PRNGKey(config.seed))
  theta = estimator.lopt.init_meta_params(theta_key)
  return {"theta": theta, "meta_opt_state": meta_optimizer.init(theta),
          "estimator_state": estimator.init(theta, population_key),
          "step": jnp.zeros((), jnp.int32), "seconds": jnp.zeros((), jnp.float32)}


def _restore(manager: ocp.CheckpointManager, like: dict[str, Any]) -> dict[str, Any]:
  """Restores the latest checkpoint into the structure of ``like``, or says why it cannot."""
  step = manager.latest_step()
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(like))
  except Exception as e:  # orbax raises many types for a damaged or mismatched checkpoint.
    raise ConfigError(f"cannot resume from the checkpoint of step {step} in {manager.directory}: "
                      f"it does not fit this config or is damaged ({type(e).__name__}: "
                      f"{str(e)[:300]}); pass --overwrite to start the run again") from None


def meta_train(config: ConfigDict, run_dir: Path, show_progress: bool = True) -> dict[str, Any]:
  """Meta-trains to ``config.outer.steps`` outer steps in ``run_dir``; returns the final state."""
  estimator = build_estimator(config)
  meta_optimizer = build_meta_optimizer(config)
  state = init_state(config, estimator, meta_optimizer)
  loop_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)

  manager = ocp.CheckpointManager(run_dir.absolute() / CHECKPOINT_DIR,
                                  options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
  if manager.latest_step() is not None:
    state = _restore(manager, state)
  start = int(state["step"])
  log = MetricsLog(run_dir, start, config.to_dict(), config.wandb.enabled, config.wandb.project)

  @jax.jit
  def outer_step(state, key):
    grad, estimator_state, metrics = estimator.grad(state["theta"], state["estimator_state"], key)
    updates, meta_opt_state = meta_optimizer.update(grad, state["meta_opt_state"], state["theta"])
    metrics["grad_norm"] = optax.global_norm(grad)
    return {"theta": optax.apply_updates(state["theta"], updates), "meta_opt_state": meta_opt_state,
            "estimator_state": estimator_state, "step": state["step"] + 1,
            "seconds": state["seconds"]}, metrics

  steps = config.outer.steps
  with tqdm(total=steps, initial=start, desc="meta-training", disable=not show_progress,
            dynamic_ncols=True) as bar:
    while int(state["step"]) < steps:
      started = time.perf_counter()
      state, metrics = outer_step(state, jax.random.fold_in(loop_key, state["step"]))
      metrics = {k: float(v) for k, v in metrics.items()}
      state["seconds"] = state["seconds"] + (time.perf_counter() - started)
      step = int(state["step"])
      log.write(step, metrics)
      bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}")
      bar.update()
      if step % config.checkpoint_every == 0 or step == steps:
        manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  manager.close()
  log.close()
  return state
