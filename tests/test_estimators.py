"""The gradient estimators against exact gradients on problems small enough to differentiate."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
import tasks
from metatrain.config import ConfigError
from metatrain.estimators import (NRES, PES, FullES, MixtureEstimator, TruncatedBackprop,
                                  TruncatedES)
from metatrain.inner_training import InnerTraining, progress_weights
from test_tasks_data import largest_constant_bytes


@dataclasses.dataclass(frozen=True)
class ScalarQuadratic:
  """Minimise 0.5 * w^2 from w = 1 (every task the same; batches are ignored)."""

  name: ClassVar[str] = "scalar_quadratic"

  def sample(self, key):
    return {}

  def data(self):
    return {}

  def task(self, task_params, data):
    return self

  def init(self, key):
    return {"w": jnp.ones(())}

  def loss(self, params, batch):
    return 0.5 * params["w"] ** 2

  def batch(self, key, split):
    return {}

  def roles(self, params):
    return {"w": "vector"}


@dataclasses.dataclass(frozen=True)
class LearnedStepSize:
  """The smallest learned optimizer: gradient descent with step size exp(theta['log_lr'])."""

  name: ClassVar[str] = "learned_step_size"

  def init_meta_params(self, key):
    return {"log_lr": jnp.log(0.3)}

  def init(self, theta, params, num_steps, roles=None):
    return ()

  def update(self, theta, opt_state, grads, params, loss=None):
    return jax.tree.map(lambda g: -jnp.exp(theta["log_lr"]) * g, grads), opt_state


HORIZON, UNROLL = 6, 3
INNER = InnerTraining(ScalarQuadratic(), LearnedStepSize(), unroll_length=UNROLL, horizon=HORIZON,
                      loss_clip=100.0)
THETA = LearnedStepSize().init_meta_params(None)


def sum_of_unroll_meta_losses(theta):
  """sum over unrolls of the mean training loss in the unroll, by plain backprop-able Python."""
  w, losses = 1.0, []
  for _ in range(HORIZON):
    losses.append(0.5 * w**2)
    w = w - jnp.exp(theta["log_lr"]) * w
  return sum(jnp.mean(jnp.stack(losses[i:i + UNROLL])) for i in range(0, HORIZON, UNROLL))


def truncated_gradient_sum(theta):
  """The same sum with each unroll's entering state held constant (what truncation estimates)."""
  w, total = 1.0, 0.0
  for _ in range(0, HORIZON, UNROLL):
    w = jax.lax.stop_gradient(w)
    losses = []
    for _ in range(UNROLL):
      losses.append(0.5 * w**2)
      w = w - jnp.exp(theta["log_lr"]) * w
    total = total + jnp.mean(jnp.stack(losses))
  return total


def _from_step_zero(state):
  """The estimator state ``state`` with every inner training at step 0."""
  if hasattr(state, "trajectories"):  # Antithetic pairs (PES, NRES).
    return state._replace(trajectories=_from_step_zero(state.trajectories))
  return state._replace(step=jnp.zeros_like(state.step))


def _whole_horizon_estimates(estimator, repeats, key):
  """Sums the estimates of the unrolls of one whole inner training, ``repeats`` times."""
  grad = jax.jit(estimator.grad)
  totals = []
  for key in jax.random.split(key, repeats):
    state = _from_step_zero(estimator.init(THETA, {}, key))
    total = 0.0
    for i in range(HORIZON // UNROLL):
      g, state, _ = grad(THETA, {}, state, jax.random.fold_in(key, i))
      total += float(g["log_lr"])
    totals.append(total)
  return np.mean(totals), np.std(totals) / np.sqrt(repeats)


def test_pes_is_unbiased_over_the_whole_horizon_and_truncated_es_is_not():
  exact = float(jax.grad(sum_of_unroll_meta_losses)(THETA)["log_lr"])
  truncated = float(jax.grad(truncated_gradient_sum)(THETA)["log_lr"])
  assert abs(exact - truncated) > 0.2 * abs(exact)  # The problem has a real truncation bias.
  key = jax.random.PRNGKey(0)
  pes_mean, pes_se = _whole_horizon_estimates(PES(INNER, population=2000, sigma=0.01), 40, key)
  tes_mean, tes_se = _whole_horizon_estimates(TruncatedES(INNER, population=2000, sigma=0.01), 40, key)
  assert abs(pes_mean - exact) < 4 * pes_se, (pes_mean, pes_se, exact)
  assert abs(tes_mean - truncated) < 4 * tes_se, (tes_mean, tes_se, truncated)
  assert abs(tes_mean - exact) > 10 * tes_se, (tes_mean, tes_se, exact)


def test_nres_is_unbiased_over_the_whole_horizon():
  """One perturbation drives a whole training, so the sum of its unrolls' estimates is the
  antithetic estimate of the gradient of the sum of the unrolls' meta-losses, through the state."""
  exact = float(jax.grad(sum_of_unroll_meta_losses)(THETA)["log_lr"])
  mean, se = _whole_horizon_estimates(NRES(INNER, population=2000, sigma=0.01), 40,
                                      jax.random.PRNGKey(0))
  assert abs(mean - exact) < 4 * se, (mean, se, exact)


def test_nres_reuses_its_perturbation_until_the_training_restarts():
  estimator = NRES(INNER, population=4, sigma=0.01)
  state = estimator.init(THETA, {}, jax.random.PRNGKey(1))
  steps = jnp.array([0, UNROLL, HORIZON, HORIZON], jnp.int32)
  state = state._replace(trajectories=state.trajectories._replace(
      step=jnp.stack([steps, steps], axis=1)))
  grad = jax.jit(estimator.grad)
  _, after_one, _ = grad(THETA, {}, state, jax.random.PRNGKey(2))
  _, after_two, _ = grad(THETA, {}, after_one, jax.random.PRNGKey(3))
  kept = lambda a, b: np.asarray(a.perturbations["log_lr"] == b.perturbations["log_lr"]).tolist()
  assert kept(state, after_one) == [True, True, False, False]  # The last two restarted.
  assert kept(after_one, after_two) == [True, False, True, True]  # Task 1 reached its horizon.
  np.testing.assert_array_equal(after_two.trajectories.step[:, 0], [2 * UNROLL, UNROLL,
                                                                    2 * UNROLL, 2 * UNROLL])


@pytest.mark.parametrize("estimator_class, shaping", [
    (TruncatedES, "sign"), (PES, "centered_rank"), (NRES, "sign"), (FullES, "centered_rank")])
def test_shaped_es_estimators_estimate_the_gradients_direction(estimator_class, shaping):
  """In one dimension, a shaped estimate's expectation is the sign of the gradient (``es``): here
  the first unroll's (the whole training's for full ES) gradient, negative: a larger step size
  lowers the loss. Every task and base loss is the same, so ranks behave as signs do."""
  inner = dataclasses.replace(INNER, unroll_length=HORIZON) if estimator_class is FullES else INNER
  estimator = estimator_class(inner, population=2000, sigma=0.01, shaping=shaping)
  state = estimator.init(THETA, {}, jax.random.PRNGKey(1))
  if estimator_class is not FullES:  # Whose state only counts trainings.
    state = _from_step_zero(state)
  g, _, _ = jax.jit(estimator.grad)(THETA, {}, state, jax.random.PRNGKey(2))
  assert abs(float(g["log_lr"]) + 1.0) < 0.1, float(g["log_lr"])


def test_full_es_matches_the_whole_training_gradient():
  inner = dataclasses.replace(INNER, unroll_length=HORIZON)
  exact = float(jax.grad(sum_of_unroll_meta_losses)(THETA)["log_lr"])
  # One unroll of the whole horizon: its meta-loss is the mean over all HORIZON steps.
  exact_mean_loss = exact * UNROLL / HORIZON
  grad = jax.jit(FullES(inner, population=2000, sigma=0.01).grad)
  estimates = [float(grad(THETA, {}, {"inner_trainings": jnp.int32(0)}, k)[0]["log_lr"])
               for k in jax.random.split(jax.random.PRNGKey(1), 40)]
  assert abs(np.mean(estimates) - exact_mean_loss) < 4 * np.std(estimates) / np.sqrt(40)


@pytest.mark.parametrize("loss_weight_power", [0.0, 2.0])
def test_tbptt_over_the_whole_horizon_equals_backprop_through_training(loss_weight_power):
  family = tasks.MLPClassifierFamily(hidden_sizes=(8,), batch_size=16)
  lo = lopt.MLPLOpt(hidden_size=8)
  steps = 5
  inner = InnerTraining(family, lo, unroll_length=steps, horizon=steps, loss_clip=100.0,
                        loss_weight_power=loss_weight_power)
  estimator = TruncatedBackprop(inner, population=2)
  theta = lo.init_meta_params(jax.random.PRNGKey(0))
  data = family.data()
  state = estimator.init(theta, data, jax.random.PRNGKey(1))
  grad, _, _ = jax.jit(estimator.grad)(theta, data, state, jax.random.PRNGKey(2))

  def whole_training_loss(theta, params, data_key, task_params):
    """The mean training loss over a whole training, step t weighted by (p + 1)((t + 1/2) / T)^p,
    written as a plain optax loop."""
    task, tx = family.task(task_params, data), lopt.as_optax(lo, theta, steps)
    opt_state, losses = tx.init(params), []
    for t in range(steps):
      batch = task.batch(jax.random.fold_in(data_key, t), "train")
      loss, grads = jax.value_and_grad(task.loss)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      params = optax.apply_updates(params, updates)
      weight = (loss_weight_power + 1) * ((t + 0.5) / steps) ** loss_weight_power
      losses.append(weight * loss)
    return jnp.mean(jnp.stack(losses))

  per_task = [jax.jit(jax.grad(whole_training_loss))(theta, *jax.tree.map(lambda x: x[i], (
      state.params, state.data_key, state.task_params))) for i in range(2)]
  expected = jax.tree.map(lambda a, b: (a + b) / 2, *per_task)
  jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=2e-4, atol=1e-6), grad, expected)


def test_progress_weights_average_one_over_a_training_and_grow_with_progress():
  horizon = 400
  for power in (0.0, 1.0, 2.0, 3.0):
    weights = np.asarray(progress_weights(jnp.arange(horizon), jnp.int32(horizon), power))
    np.testing.assert_allclose(weights.mean(), 1.0, rtol=1e-4)
    assert np.all(np.diff(weights) >= 0) and (power == 0) == (weights[-1] == weights[0])
  with pytest.raises(ValueError, match="loss_weight_power must be >= 0, got -1"):
    dataclasses.replace(INNER, loss_weight_power=-1.0)


@pytest.mark.parametrize("sampling, median", [("uniform", 5050), ("log_uniform", 1000)])
def test_horizons_are_multiples_of_the_unroll_in_range_with_the_sampling_s_median(sampling,
                                                                                  median):
  """Over [100, 10000], the uniform median is the midpoint and the log-uniform one the geometric
  mean, sqrt(100 * 10000) = 1000."""
  inner = dataclasses.replace(INNER, unroll_length=10, min_horizon=100, horizon=10_000,
                              horizon_sampling=sampling)
  horizons = np.asarray(jax.vmap(inner.sample_horizon)(
      jax.random.split(jax.random.PRNGKey(0), 20_000)))
  assert np.all(horizons % 10 == 0) and 100 <= horizons.min() and horizons.max() <= 10_000
  assert abs(np.median(horizons) / median - 1) < 0.05, np.median(horizons)
  with pytest.raises(ValueError, match="unknown horizon_sampling 'log'; valid choices: "
                                       r"\['uniform', 'log_uniform'\]"):
    dataclasses.replace(INNER, horizon_sampling="log")


@pytest.mark.parametrize("estimator_class", [TruncatedES, PES, NRES, TruncatedBackprop])
def test_a_diverged_task_is_dropped_reported_and_restarted(estimator_class):
  inner = dataclasses.replace(INNER, unroll_length=2)
  kwargs = {} if estimator_class is TruncatedBackprop else {"sigma": 0.01}
  estimator = estimator_class(inner, population=4, **kwargs)
  state = estimator.init(THETA, {}, jax.random.PRNGKey(1))
  poison = lambda params: {"w": params["w"].at[0].set(jnp.nan)}
  if hasattr(state, "trajectories"):
    state = state._replace(trajectories=state.trajectories._replace(
        params=poison(state.trajectories.params)))
  else:
    state = state._replace(params=poison(state.params))
  grad = jax.jit(estimator.grad)
  g, state, metrics = grad(THETA, {}, state, jax.random.PRNGKey(2))
  assert float(metrics["diverged_fraction"]) == 0.25
  assert np.isfinite(float(g["log_lr"])) and float(g["log_lr"]) != 0.0
  assert np.isfinite(float(metrics["meta_loss"])) and np.isfinite(float(metrics["grad_variance"]))
  theta = optax.apply_updates(THETA, jax.tree.map(lambda x: -0.01 * x, g))
  g, state, metrics = grad(theta, {}, state, jax.random.PRNGKey(3))
  assert float(metrics["diverged_fraction"]) == 0.0  # The diverged task was restarted.
  assert np.isfinite(float(g["log_lr"])) and np.isfinite(float(theta["log_lr"]))


@pytest.mark.parametrize("estimator_class", [TruncatedES, PES, NRES, TruncatedBackprop, FullES])
def test_estimators_read_the_data_as_an_argument_not_as_a_constant(estimator_class):
  mixture = tasks.Mixture((tasks.MLPClassifierFamily(hidden_sizes=(8,), batch_size=16),
                           tasks.TeacherFamily(hidden_sizes=(8,))), (1.0, 1.0),
                          ("digits", "teacher"))
  lo = lopt.MLPLOpt(hidden_size=8)
  kwargs = {} if estimator_class is TruncatedBackprop else {"sigma": 0.01}
  estimator = MixtureEstimator(tuple(
      estimator_class(InnerTraining(family, lo, unroll_length=2, horizon=4, loss_clip=10.0,
                                    meta_loss="held_out"), population=2, **kwargs)
      for family in mixture.families), mixture.names)
  theta, data = lo.init_meta_params(jax.random.PRNGKey(0)), mixture.data()
  key = jax.random.PRNGKey(1)
  state = jax.eval_shape(estimator.init, theta, data, key)
  smallest_array = min(x.nbytes for x in jax.tree.leaves(data))
  for lowered in (jax.jit(estimator.init).lower(theta, data, key),
                  jax.jit(estimator.grad).lower(theta, data, state, key)):
    assert largest_constant_bytes(lowered.as_text()) < smallest_array


def test_shaping_is_for_the_es_estimators_only(tiny_config):
  with pytest.raises(ConfigError, match="config.estimator.shaping .'sign'. shapes the ES "
                                        "estimators' loss differences; the tbptt estimator"):
    tiny_config("--config.estimator.name=tbptt", "--config.estimator.shaping=sign")
