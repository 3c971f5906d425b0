"""Inner training: a task trained by an optax transformation, one truncated unroll at a time.

An ``InnerState`` is one task's training in progress. ``unroll`` advances it ``num_steps`` steps
with ``lax.scan``; everything is a pure function of arrays, so a population of inner states is a
leading axis that ``vmap`` maps; the family's ``data`` (``family.data()``, shared by the population,
not mapped) is an argument that callers pass through their ``jit`` (see ``tasks.base``).
Meta-training passes a learned optimizer exported with ``lopt.as_optax`` (so meta-training trains
exactly what users get); evaluation passes any optax transformation. Each inner training knows
its own ``horizon`` (meta-training may draw it per task) and its ``initial_loss``, the training loss
of its first batch at initialisation, by which meta-losses of tasks of different scales can be
normalised (``tasks.objectives``). ``train_one`` runs a whole training and scores it, for
evaluation and for meta-training's validation alike.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tasks import SPLITS, Data, TaskFamily


class InnerState(NamedTuple):
  """One inner training: parameters, optimizer state, step of ``horizon``, the training loss at
  initialisation, the task's arrays and batch-order key."""
  params: Any
  opt_state: Any
  step: jax.Array
  horizon: jax.Array
  initial_loss: jax.Array
  task_params: Any
  data_key: jax.Array


def batch_key(state: InnerState) -> jax.Array:
  """The key of the training batch of ``state``'s current step."""
  return jax.random.fold_in(state.data_key, state.step)


def init_inner_state(family: TaskFamily, data: Data, tx: optax.GradientTransformation,
                     key: jax.Array, horizon: int | jax.Array) -> InnerState:
  """Draws a task from ``family`` (on its ``data``) and starts a training of ``horizon`` steps
  with ``tx``.

  ``tx`` should plan for ``horizon`` steps (a learned optimizer reads it through ``as_optax``).
  """
  task_key, init_key, data_key = jax.random.split(key, 3)
  task_params = family.sample(task_key)
  task = family.task(task_params, data)
  params = task.init(init_key)
  state = InnerState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                     horizon=jnp.asarray(horizon, jnp.int32), initial_loss=jnp.zeros(()),
                     task_params=task_params, data_key=data_key)
  initial_loss = task.loss(params, task.batch(batch_key(state), "train"))
  return state._replace(initial_loss=initial_loss)


def finished(state: InnerState) -> jax.Array:
  """Whether the inner training has run its whole horizon."""
  return state.step >= state.horizon


def unroll(family: TaskFamily, data: Data, tx: optax.GradientTransformationExtraArgs,
           state: InnerState, num_steps: int, held_out: bool = False, remat: bool = False
           ) -> tuple[InnerState, dict[str, jax.Array]]:
  """Trains ``num_steps`` steps with ``tx``; returns the new state and per-step losses.

  ``losses["train"][t]`` is the training loss of the batch of step ``t``, measured before that
  step's update (the loss reaches ``tx`` through ``value=``). With ``held_out``,
  ``losses["held_out"][t]`` is the loss of the same parameters on a batch of the ``test`` split.
  ``remat`` recomputes each step's activations in the backward pass (``jax.checkpoint``), so that
  differentiating through the unroll keeps one step's activations instead of ``num_steps``.
  """
  task = family.task(state.task_params, data)

  def train_step(state: InnerState, _):
    step_key = batch_key(state)
    loss, grads = jax.value_and_grad(task.loss)(state.params, task.batch(step_key, "train"))
    losses = {"train": loss}
    if held_out:
      held_out_batch = task.batch(jax.random.fold_in(step_key, 1), "test")
      losses["held_out"] = task.loss(state.params, held_out_batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, opt_state=opt_state, step=state.step + 1), losses

  return jax.lax.scan(jax.checkpoint(train_step) if remat else train_step, state, length=num_steps)


def train_one(family: TaskFamily, data: Data, tx: optax.GradientTransformationExtraArgs,
              key: jax.Array, num_steps: int) -> dict[str, jax.Array]:
  """Trains the task of ``key`` for ``num_steps`` steps: its loss curve and final metrics."""
  state = init_inner_state(family, data, tx, key, num_steps)
  state, losses = unroll(family, data, tx, state, num_steps)
  task = family.task(state.task_params, data)
  final = {f"{split}_{name}": value for split in SPLITS
           for name, value in task.evaluate(state.params, split).items()}
  return {"losses": losses["train"], **final}
