"""What every gradient estimator shares: how the population's tasks are trained and scored.

``InnerTraining`` trains one task with the learned optimizer at some ``theta`` (exported with
``lopt.as_optax``, so meta-training trains exactly what users get) and turns an unroll into a
meta-loss:

- ``meta_loss="train"``: the mean training loss over the unroll's steps;
- ``meta_loss="held_out"``: the mean loss over the unroll of the same parameters on batches of the
  held-out split (what generalisation asks of an optimizer).

Each loss is first normalised by the task's loss at initialisation ``L_0`` (``normalization``:
``none`` | ``relative`` ``L/L_0`` | ``log_relative`` ``log(L/L_0)``, see ``tasks.objectives``), so that
tasks of different scales can be averaged, then clipped to ``loss_clip``. The loss of step ``t`` of
a ``T``-step training is then weighted by

    w_t = (p + 1) ((t + 1/2) / T)^p,      p = ``loss_weight_power`` >= 0,

whose mean over a whole training is about 1. ``p = 0`` scores the mean loss over training (each
step alike); ``p > 0`` scores the late steps more, closer to the final loss that evaluation and
users judge an optimizer by. The mean loss rewards fast early progress only: an optimizer
meta-trained on it has no reason to anneal its steps, and one that does not anneal keeps its
largest steps at the end of a training and past the horizons it was meta-trained on.

An unroll whose losses or parameters are not finite has *diverged*: estimators drop it from their
estimate, count it, and have it restarted (it is marked finished, so ``reset_finished`` replaces it
by a fresh task before the next unroll).

Every inner training draws its horizon ``T`` from the multiples of ``unroll_length`` in
``[min_horizon, horizon]`` (fixed at ``horizon`` when ``min_horizon`` is ``None``), and the learned
optimizer plans for that ``T``: meta-training then covers trainings of several lengths, as the
learned optimizer will meet them. ``horizon_sampling="uniform"`` draws each multiple alike;
``"log_uniform"`` draws ``log T`` uniformly in ``[log min_horizon, log horizon]`` and rounds ``T``
to the nearest multiple (like learned_optimization's ``LogUniformLengthSchedule``): each factor of
2 in length gets the same share of trainings, so short trainings are not drowned out by long ones
when the range spans orders of magnitude (the median is about ``sqrt(min_horizon * horizon)``).
The population starts staggered at random multiples of ``unroll_length`` below each task's
horizon, so that every window of a training is represented in every outer step.

Every method takes the family's ``data`` (``family.data()``, or its traced value inside the
estimator's ``jit``), shared by the whole population.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lopt import LearnedOptimizer, as_optax
from metatrain.aggregate import select
from metatrain.unroll import InnerState, finished, init_inner_state, unroll
from tasks import Data, TaskFamily, family_roles, objectives

META_LOSSES = ("train", "held_out")
HORIZON_SAMPLINGS = ("uniform", "log_uniform")


def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def progress_weights(steps: jax.Array, horizon: jax.Array, power: float) -> jax.Array:
  """The weights ``(p + 1) ((t + 1/2) / T)^p`` of the losses of ``steps`` ``t`` of a training of
  ``horizon`` ``T`` steps (all 1 for ``power`` ``p = 0``); see the module docstring."""
  if power == 0:
    return jnp.ones(steps.shape)
  return (power + 1) * ((steps + 0.5) / horizon) ** power


@dataclasses.dataclass(frozen=True)
class InnerTraining:
  """How the population's tasks are trained and scored; see the module docstring."""

  family: TaskFamily
  lopt: LearnedOptimizer
  unroll_length: int
  horizon: int
  loss_clip: float
  meta_loss: str = "train"
  min_horizon: int | None = None
  normalization: str = "none"
  loss_weight_power: float = 0.0
  horizon_sampling: str = "uniform"

  def __post_init__(self):
    if self.meta_loss not in META_LOSSES:
      raise ValueError(f"unknown meta_loss '{self.meta_loss}'; valid choices: {list(META_LOSSES)}")
    objectives.check_normalization(self.normalization)
    if self.horizon_sampling not in HORIZON_SAMPLINGS:
      raise ValueError(f"unknown horizon_sampling '{self.horizon_sampling}'; valid choices: "
                       f"{list(HORIZON_SAMPLINGS)}")
    if self.loss_weight_power < 0:
      raise ValueError(f"loss_weight_power must be >= 0, got {self.loss_weight_power}")
    if not self.unroll_length <= self.shortest_horizon <= self.horizon:
      raise ValueError(f"min_horizon ({self.shortest_horizon}) must be between unroll_length "
                       f"({self.unroll_length}) and horizon ({self.horizon})")

  @property
  def shortest_horizon(self) -> int:
    return self.horizon if self.min_horizon is None else self.min_horizon

  @functools.cached_property
  def roles(self) -> Any:
    """The parameter roles of the family's tasks, which role-aware learned optimizers (μLO) read."""
    return family_roles(self.family)

  def optimizer(self, theta, horizon: int | jax.Array) -> optax.GradientTransformationExtraArgs:
    """The learned optimizer at ``theta`` as users get it, planning for ``horizon`` steps."""
    return as_optax(self.lopt, theta, horizon, self.roles)

  def sample_horizon(self, key: jax.Array) -> jax.Array:
    """A horizon drawn from the multiples of ``unroll_length`` in [min_horizon, horizon], uniformly
    or log-uniformly (``horizon_sampling``, see the module docstring)."""
    low = -(-self.shortest_horizon // self.unroll_length)
    high = self.horizon // self.unroll_length
    if self.horizon_sampling == "uniform":
      return self.unroll_length * jax.random.randint(key, (), low, high + 1)
    log_unrolls = jax.random.uniform(key, (), minval=jnp.log(low), maxval=jnp.log(high))
    unrolls = jnp.clip(jnp.round(jnp.exp(log_unrolls)), low, high).astype(jnp.int32)
    return self.unroll_length * unrolls

  def fresh(self, theta, data: Data, key: jax.Array) -> InnerState:
    """One new inner training at step 0, of a freshly drawn horizon."""
    horizon = self.sample_horizon(jax.random.fold_in(key, 1))
    return init_inner_state(self.family, data, self.optimizer(theta, horizon), key, horizon)

  def start(self, theta, data: Data, key: jax.Array, population: int) -> InnerState:
    """Starts ``population`` inner trainings at random multiples of ``unroll_length`` steps."""
    init_key, offset_key = jax.random.split(key)
    states = jax.vmap(lambda k: self.fresh(theta, data, k))(jax.random.split(init_key, population))
    num_windows = states.horizon // self.unroll_length
    offsets = self.unroll_length * jax.random.randint(offset_key, (population,), 0, num_windows)
    return states._replace(step=offsets.astype(jnp.int32))

  def reset_finished(self, theta, data: Data, states: InnerState, key: jax.Array) -> InnerState:
    """Restarts (with fresh tasks) the inner trainings that reached their horizon."""
    fresh = jax.vmap(lambda k: self.fresh(theta, data, k))(
        jax.random.split(key, states.step.shape[0]))
    return select(finished(states), fresh, states)

  def mark_finished(self, states: InnerState, done: jax.Array) -> InnerState:
    """``states`` with the trainings where ``done`` holds set to their horizon (to be restarted)."""
    return states._replace(step=jnp.where(done, states.horizon, states.step))

  def meta_loss_of_unroll(self, theta, data: Data, state: InnerState, num_steps: int | None = None,
                          remat: bool = False) -> tuple[jax.Array, InnerState, jax.Array]:
    """Unrolls one task; returns ``(meta_loss, next_state, diverged)``.

    A diverged unroll gets meta-loss ``loss_clip`` and a next state marked as finished.
    """
    num_steps = self.unroll_length if num_steps is None else num_steps
    # The optimizer's planned horizon lives in its state, so the exported transformation's own
    # num_steps (only read by its init) does not matter here.
    end, losses = unroll(self.family, data, self.optimizer(theta, self.horizon), state, num_steps,
                         held_out=self.meta_loss == "held_out", remat=remat)
    scored = objectives.normalize(losses[self.meta_loss], state.initial_loss, self.normalization)
    weights = progress_weights(state.step + jnp.arange(num_steps), state.horizon,
                               self.loss_weight_power)
    diverged = ~(all_finite(losses) & all_finite(end.params))
    meta_loss = jnp.where(diverged, self.loss_clip,
                          jnp.mean(weights * objectives.clip(scored, self.loss_clip)))
    return meta_loss, self.mark_finished(end, diverged), diverged
