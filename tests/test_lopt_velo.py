"""The VeLO-style learned optimizer: shapes and dtypes, the optax export, training from its initial
meta-parameters, save/load, jit and vmap over a population, and the loss input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import loss_features
from test_lopt import _digits_task, _train


@pytest.fixture(scope="module")
def default_lo():
  """The default architecture, its initial meta-parameters and its jitted update (compiled once per
  kind of input, shared by the tests)."""
  lo = lopt.VeLOLOpt()
  return lo, jax.jit(lo.init_meta_params)(jax.random.PRNGKey(0)), jax.jit(lo.update)


@pytest.fixture(scope="module")
def problem():
  """Parameters of every rank (4-D bf16 kernel, matrix, bf16 vector, scalar) and gradients."""
  params = {"kernel": np.ones((3, 3, 4, 16), jnp.bfloat16), "w": np.ones((16, 8), np.float32),
            "b": np.ones((8,), jnp.bfloat16), "scale": np.ones((), np.float32)}
  rng = np.random.default_rng(1)
  grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
  return params, grads


def _updates_after(default_lo, theta, params, grads, losses):
  """The updates of the last of ``len(losses)`` steps fed the same ``grads`` and these losses."""
  lo, _, update = default_lo
  state = lo.init(theta, params, 10)
  for loss in losses:
    updates, state = update(theta, state, grads, params, loss)
  return updates


def test_registered_and_rebuilt_from_its_hyperparameters():
  lo = lopt.make("velo_lstm", lstm_hidden_size=16, num_bases=4, loss_decays=[0.9])
  assert lopt.ARCHITECTURES["velo_lstm"] is lopt.VeLOLOpt
  assert lo == lopt.VeLOLOpt(lstm_hidden_size=16, num_bases=4, loss_decays=(0.9,))


def test_updates_keep_shapes_and_dtypes_and_steps_past_the_horizon_act_as_the_last_step(
    default_lo, problem):
  (lo, theta, update), (params, grads) = default_lo, problem
  state = lo.init(theta, params, num_steps=10, roles=None)
  assert state.lstm_state.hidden.shape == (4, lo.lstm_hidden_size)
  updates, new_state = update(theta, state, grads, params, 2.0)
  assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
      lambda p: (p.shape, p.dtype), params)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
      lambda a: (a.shape, jnp.asarray(a).dtype), state)
  assert all(np.all(np.isfinite(u)) and np.any(u != 0) for u in jax.tree.leaves(updates))
  at_end, _ = update(theta, state._replace(step=jnp.int32(10)), grads, params, 2.0)
  past_end, _ = update(theta, state._replace(step=jnp.int32(50)), grads, params, 2.0)
  jax.tree.map(np.testing.assert_array_equal, at_end, past_end)


def test_export_gives_the_same_updates_as_the_internal_call(default_lo, problem):
  (lo, theta, update), (params, grads) = default_lo, problem
  tx = lopt.as_optax(lo, theta, num_steps=10)
  tx_update = jax.jit(tx.update)
  tx_state, lo_state = tx.init(params), lo.init(theta, params, 10)
  for loss in (2.0, 1.5, 1.0):
    tx_updates, tx_state = tx_update(grads, tx_state, params, value=loss)
    lo_updates, lo_state = update(theta, lo_state, grads, params, loss)
    jax.tree.map(np.testing.assert_array_equal, tx_updates, lo_updates)
    params = optax.apply_updates(params, tx_updates)


def test_initial_theta_trains_a_haiku_model_in_a_plain_optax_loop(default_lo):
  lo, theta, _ = default_lo
  losses = _train(_digits_task(), lopt.as_optax(lo, theta, num_steps=150), 150)
  assert losses[-10:].mean() < 0.5 * losses[:5].mean()


def test_save_then_load_gives_the_same_updates(tmp_path, default_lo, problem):
  (_, theta, _), (params, grads) = default_lo, problem
  lo = lopt.make("velo_lstm", step_mult=2e-3, time_scales=[1.0, 5.0, 20.0, 50.0])
  lopt.save(tmp_path / "lo", lo, theta, {"num_steps": 50})
  loaded_lo, loaded_theta, card = lopt.load_meta_params(tmp_path / "lo", "velo_lstm")
  assert loaded_lo == lo and card["architecture"] == "velo_lstm"
  jax.tree.map(np.testing.assert_array_equal, loaded_theta, theta)
  original, loaded = lopt.as_optax(lo, theta, 50), lopt.load(tmp_path / "lo")
  first_update = lambda tx: tx.update(grads, tx.init(params), params, value=1.5)[0]
  expected, got = jax.jit(lambda: (first_update(original), first_update(loaded)))()
  jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_update_is_jittable_and_vmaps_over_a_population_of_thetas(default_lo, problem):
  """A population as evolution strategies makes it: theta plus a perturbation per member."""
  (lo, theta, _), (params, grads) = default_lo, problem
  rng = np.random.default_rng(7)
  thetas = jax.tree.map(lambda x: x + 0.1 * rng.standard_normal((3,) + x.shape, np.float32),
                        theta)
  states = jax.vmap(lambda theta: lo.init(theta, params, 10))(thetas)
  population_update = jax.jit(jax.vmap(lo.update, in_axes=(0, 0, None, None, None)))
  updates, states = population_update(thetas, states, grads, params, 2.0)
  updates, _ = population_update(thetas, states, grads, params, 1.0)
  assert all(u.shape[0] == 3 for u in jax.tree.leaves(updates))
  theta_1 = jax.tree.map(lambda x: x[1], thetas)
  expected = _updates_after(default_lo, theta_1, params, grads, [2.0, 1.0])
  jax.tree.map(lambda u, e: np.testing.assert_allclose(
      np.float32(u[1]), np.float32(e), rtol=1e-2, atol=1e-6), updates, expected)
  assert not np.allclose(updates["w"][0], updates["w"][1])


def test_the_loss_matters_and_a_missing_or_non_finite_loss_is_ignored(default_lo, problem):
  (_, theta, _), (params, grads) = default_lo, problem
  steady = _updates_after(default_lo, theta, params, grads, [2.0, 2.0, 2.0])
  falling = _updates_after(default_lo, theta, params, grads, [2.0, 1.0, 0.5])
  assert not np.allclose(steady["w"], falling["w"], rtol=1e-6, atol=0)
  without = _updates_after(default_lo, theta, params, grads, [None, None, None])
  assert all(np.all(np.isfinite(np.float32(u))) for u in jax.tree.leaves(without))
  non_finite = _updates_after(default_lo, theta, params, grads, [np.nan, np.inf, np.nan])
  jax.tree.map(np.testing.assert_array_equal, non_finite, without)


def test_loss_features_do_not_depend_on_the_scale_of_the_loss_and_flag_a_rise():
  decays = (0.5, 0.9)

  def features_after(losses):
    state = loss_features.init(len(decays))
    for loss in losses:
      state = loss_features.update(state, loss, decays)
    return np.asarray(loss_features.features(state))

  falling = features_after([2.0, 1.0, 0.5])
  np.testing.assert_allclose(features_after([20.0, 10.0, 5.0]), falling, rtol=1e-6)
  assert np.all(falling[:2] < 0) and np.all(falling[2:] == 0)
  assert np.all(features_after([2.0, 1.0, 3.0])[2:] > 0)


def test_bad_sizes_fail_clearly():
  with pytest.raises(ValueError, match="hidden_size >= 2"):
    lopt.VeLOLOpt(hidden_size=1)
  with pytest.raises(ValueError, match="num_bases >= 1"):
    lopt.VeLOLOpt(num_bases=0)
  with pytest.raises(ValueError, match="at least one momentum decay"):
    lopt.VeLOLOpt(momentum_decays=())


def test_an_update_without_the_loss_warns_that_the_loss_features_stay_put(default_lo, problem):
  (lo, theta, _), (params, grads) = default_lo, problem
  tx = lopt.as_optax(lo, theta, 50)
  with pytest.warns(UserWarning, match="reads the training loss, but update.. got no value="):
    tx.update(grads, tx.init(params), params)
