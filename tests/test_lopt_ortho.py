"""The direction-only orthogonalised learned optimizer ("ortho_mlp")."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
import tasks
from lopt.ortho_mlp_lopt import newton_schulz, warmup_cosine


def _params(key=jax.random.PRNGKey(0)):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"dense": {"w": jax.random.normal(k1, (24, 48)) * 0.2, "b": jnp.zeros((48,))},
          "conv": {"w": jax.random.normal(k2, (3, 3, 4, 8)) * 0.2},
          "out": {"w": jax.random.normal(k3, (48, 10)) * 0.2}}


def _grads(step: int, params):
  keys = jax.random.split(jax.random.PRNGKey(100 + step), len(jax.tree.leaves(params)))
  return jax.tree.unflatten(jax.tree.structure(params),
                            [jax.random.normal(k, p.shape, p.dtype)
                             for k, p in zip(keys, jax.tree.leaves(params))])


def _theta(lo=lopt.OrthoMLPLOpt()):
  return lo.init_meta_params(jax.random.PRNGKey(1))


def test_newton_schulz_makes_singular_values_near_one():
  x = jax.random.normal(jax.random.PRNGKey(0), (40, 16)) * jnp.linspace(0.3, 3.0, 16)
  singular_values = np.linalg.svd(np.asarray(newton_schulz(x)), compute_uv=False)
  assert singular_values.min() > 0.6 and singular_values.max() < 1.25
  # The polar factor's directions: NS(x) is close to U V^T of x.
  u, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
  cosine = np.sum(np.asarray(newton_schulz(x)) * (u @ vt)) / (
      np.linalg.norm(newton_schulz(x)) * np.linalg.norm(u @ vt))
  assert cosine > 0.95


def test_matrix_updates_have_unit_rms_times_the_shape_factor_and_vectors_get_adam():
  lo = lopt.OrthoMLPLOpt()
  params = _params()
  constant = optax.constant_schedule(1.0)
  tx = lopt.as_optax(lo, _theta(lo), 10, learning_rate=constant)
  adam = optax.adam(1.0)
  state, adam_state = tx.init(params), adam.init(params["dense"]["b"])
  for step in range(3):
    grads = _grads(step, params)
    updates, state = tx.update(grads, state, params)
    adam_updates, adam_state = adam.update(grads["dense"]["b"], adam_state)
    rms = lambda x: float(jnp.sqrt(jnp.mean(jnp.square(x))))
    assert rms(updates["dense"]["w"]) == pytest.approx(np.sqrt(48 / 24), rel=1e-4)
    assert rms(updates["out"]["w"]) == pytest.approx(1.0, rel=1e-4)
    assert rms(updates["conv"]["w"]) == pytest.approx(1.0, rel=1e-4)  # fan-in 36 > fan-out 8
    np.testing.assert_allclose(updates["dense"]["b"], adam_updates, rtol=1e-5, atol=1e-7)


def test_matrix_updates_are_orthogonal_directions():
  lo = lopt.OrthoMLPLOpt()
  params = _params()
  tx = lopt.as_optax(lo, _theta(lo), 10, learning_rate=optax.constant_schedule(1.0))
  updates, _ = tx.update(_grads(0, params), tx.init(params), params)
  for matrix in (updates["out"]["w"], updates["conv"]["w"].reshape(36, 8)):
    singular_values = np.linalg.svd(np.asarray(matrix), compute_uv=False)
    assert singular_values.max() / singular_values.min() < 2.0  # NS_5 leaves them in ~[0.7, 1.2].


def test_weight_decay_is_decoupled_and_follows_the_learning_rate():
  lo = lopt.OrthoMLPLOpt()
  params, theta = _params(), _theta(lo)
  grads = _grads(0, params)
  plain = lopt.as_optax(lo, theta, 10, learning_rate=optax.constant_schedule(0.1))
  decayed = lopt.as_optax(lo, theta, 10, learning_rate=optax.constant_schedule(0.1),
                          weight_decay=0.5)
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_decayed, _ = decayed.update(grads, decayed.init(params), params)
  expected = jax.tree.map(lambda u, p: u - 0.1 * 0.5 * p, u_plain, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               u_decayed, expected)


def test_default_schedule_is_warmup_cosine_over_the_planned_steps():
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 100)
  steps = jnp.arange(0, 120)
  np.testing.assert_allclose(warmup_cosine(steps, jnp.asarray(100), 0.05),
                             jax.vmap(schedule)(steps), atol=1e-6)


def test_export_gives_the_internal_update():
  lo = lopt.OrthoMLPLOpt()
  params, theta = _params(), _theta(lo)
  tx = lopt.as_optax(lo, theta, 50)
  state, internal_state = tx.init(params), lo.init(theta, params, 50)
  for step in range(3):
    grads = _grads(step, params)
    updates, state = tx.update(grads, state, params)
    internal, internal_state = lo.update(theta, internal_state, grads, params)
    jax.tree.map(np.testing.assert_array_equal, updates, internal)


def test_untrained_theta_trains_a_digits_mlp_and_save_load_keeps_the_updates(tmp_path):
  family = tasks.MLPClassifierFamily(hidden_sizes=(32,))
  task = family.task(family.sample(jax.random.PRNGKey(0)), family.data())
  lo = lopt.OrthoMLPLOpt(learning_rate=1e-2)
  theta = _theta(lo)
  lopt.save(tmp_path / "ortho", lo, theta, {"num_steps": 100})
  loaded = lopt.load(tmp_path / "ortho")
  tx = lopt.as_optax(lo, theta, 100)
  params = task.init(jax.random.PRNGKey(2))

  def train(tx):
    def step(carry, key):
      params, state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(key, "train"))
      updates, state = tx.update(grads, state, params, value=loss)
      return (optax.apply_updates(params, updates), state), loss
    _, losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)),
                                               jax.random.split(jax.random.PRNGKey(3), 100)))(params)
    return np.asarray(losses)

  losses = train(tx)
  assert losses[-10:].mean() < 0.2 * losses[:5].mean()
  np.testing.assert_allclose(train(loaded), losses, rtol=1e-5)
  # The card's learning rate is the default; another one gives another training.
  assert not np.allclose(train(lopt.load(tmp_path / "ortho", learning_rate=1e-4)), losses)


def test_bfloat16_parameters_and_non_finite_gradients():
  lo = lopt.OrthoMLPLOpt()
  params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params())
  tx = lopt.as_optax(lo, _theta(lo), 10)
  state = tx.init(params)
  grads = _grads(0, params)
  grads["dense"]["w"] = grads["dense"]["w"].at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf)
  grads["dense"]["b"] = grads["dense"]["b"].at[0].set(jnp.nan)
  for _ in range(2):
    updates, state = tx.update(grads, state, params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
      assert u.dtype == jnp.bfloat16 and u.shape == p.shape
      assert bool(jnp.all(jnp.isfinite(u)))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": -1.0}, "learning_rate must be a float >= 0 or an optax schedule"),
    ({"learning_rate": "fast"}, "learning_rate must be a float >= 0 or an optax schedule"),
    ({"weight_decay": -0.1}, "weight_decay must be a float >= 0"),
    ({"learning_rate": optax.cosine_decay_schedule(1e-3, 50)}, "ends before the training does"),
])
def test_bad_learning_rates_and_weight_decays_are_clear_errors(kwargs, message):
  lo = lopt.OrthoMLPLOpt()
  with pytest.raises(ValueError, match=message):
    lopt.as_optax(lo, _theta(lo), 100, **kwargs)


def test_learning_rate_is_refused_by_an_optimizer_that_learns_its_step_size():
  lo = lopt.MLPLOpt()
  with pytest.raises(ValueError, match="learns its own step size.*'ortho_mlp'"):
    lopt.as_optax(lo, lo.init_meta_params(jax.random.PRNGKey(0)), 100, learning_rate=1e-3)


def test_a_rank_3_tensor_is_an_error_that_names_it_and_the_fix():
  lo = lopt.OrthoMLPLOpt()
  params = {"attention": {"kernel": jnp.zeros((16, 4, 8))}}
  with pytest.raises(ValueError, match=r"\['attention'\]\['kernel'\].*nn.Dense"):
    lopt.as_optax(lo, _theta(lo), 100).init(params)
