"""The Adafac MLP learned optimizer: factored moments, dtypes, the optax export, save/load, memory."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt.accumulators import factored_axes, init_second_moments, update_second_moments


def _state_bytes(state) -> int:
  shapes = jax.tree.leaves(state)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in shapes)


@pytest.fixture(scope="module")
def conv_net_problem():
  """A small haiku conv net (4-D kernel, matrix, vectors) on 8x8 inputs labelled by a random teacher:
  ``(loss(params), params)``."""
  rng = np.random.default_rng(0)
  inputs = rng.standard_normal((256, 8, 8, 1), np.float32)
  labels = np.argmax(inputs.reshape(256, -1) @ rng.standard_normal((64, 10), np.float32), axis=-1)
  model = hk.without_apply_rng(hk.transform(lambda x: hk.Sequential(
      [hk.Conv2D(8, 3), jax.nn.relu, hk.Flatten(), hk.Linear(10)])(x)))

  def loss(params):
    logits = model.apply(params, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return loss, jax.jit(model.init)(jax.random.PRNGKey(1), inputs[:1])


@pytest.fixture(scope="module")
def default_lo():
  """The default architecture and its initial meta-parameters."""
  lo = lopt.AdafacMLPLOpt()
  return lo, jax.jit(lo.init_meta_params)(jax.random.PRNGKey(0))


def test_factored_second_moments_are_exact_for_rank_one_squared_gradients():
  a, b, c = np.random.default_rng(0).standard_normal((3, 40), np.float32)
  g = jnp.asarray(a[:, None, None] * c[None, :3, None] * b[None, None, :])  # Shape (40, 3, 40).
  assert factored_axes(g.shape) == (0, 2)
  decays = (0.5, 0.9)
  moments = init_second_moments(g, len(decays))
  assert moments["row"].shape == (2, 40, 3, 1) and moments["col"].shape == (2, 1, 3, 40)
  for _ in range(3):  # For every k, g[:, k, :]^2 is rank one.
    moments, v = update_second_moments(moments, jnp.square(g), decays)
  np.testing.assert_allclose(v, (1 - np.power(decays, 3))[:, None, None, None] * jnp.square(g),
                             rtol=1e-4)
  vector_moments = init_second_moments(g[0, 0], len(decays))
  assert set(vector_moments) == {"full"} and vector_moments["full"].shape == (2, 40)


def test_updates_keep_shapes_and_dtypes_and_steps_past_the_horizon_act_as_the_last_step(default_lo):
  lo, theta = default_lo
  params = {"kernel": np.ones((3, 3, 4, 16), jnp.bfloat16), "w": np.ones((16, 8), np.float32),
            "b": np.ones((8,), jnp.bfloat16), "scale": np.ones((), np.float32)}
  rng = np.random.default_rng(1)
  grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
  state = lo.init(theta, params, num_steps=10)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((state.momenta,
                                                                     state.second_moments)))
  update = jax.jit(lo.update)
  updates, new_state = update(theta, state, grads, params)
  assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
      lambda p: (p.shape, p.dtype), params)
  assert jax.tree.map(np.shape, new_state) == jax.tree.map(np.shape, state)
  assert all(np.all(np.isfinite(u)) and np.any(u != 0) for u in jax.tree.leaves(updates))
  at_end, _ = update(theta, state._replace(step=jnp.int32(10)), grads, params)
  past_end, _ = update(theta, state._replace(step=jnp.int32(50)), grads, params)
  jax.tree.map(np.testing.assert_array_equal, at_end, past_end)


def test_export_gives_the_same_updates_as_the_internal_call(conv_net_problem, default_lo):
  (loss, params), (lo, theta) = conv_net_problem, default_lo
  tx = lopt.as_optax(lo, theta, num_steps=100)
  states = tx.init(params), lo.init(theta, params, 100)

  @jax.jit
  def both(states, params):
    value, grads = jax.value_and_grad(loss)(params)
    tx_updates, tx_state = tx.update(grads, states[0], params, value=value)
    lo_updates, lo_state = lo.update(theta, states[1], grads, params, value)
    return tx_updates, lo_updates, (tx_state, lo_state)

  for _ in range(3):
    tx_updates, lo_updates, states = both(states, params)
    jax.tree.map(np.testing.assert_array_equal, tx_updates, lo_updates)
    params = optax.apply_updates(params, tx_updates)


def test_initial_theta_trains_a_haiku_conv_net_in_a_plain_optax_loop(conv_net_problem, default_lo):
  (loss, params), (lo, theta) = conv_net_problem, default_lo
  tx = lopt.as_optax(lo, theta, num_steps=150)

  def step(carry, _):
    params, opt_state = carry
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=value)
    return (optax.apply_updates(params, updates), opt_state), value

  losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=150)[1])(params)
  assert losses[-10:].mean() < 0.5 * losses[:5].mean()


def test_save_then_load_gives_the_same_updates(tmp_path, conv_net_problem):
  loss, params = conv_net_problem
  lo = lopt.make("adafac_mlp", hidden_size=8, momentum_decays=[0.9, 0.95, 0.99])
  theta = jax.jit(lo.init_meta_params)(jax.random.PRNGKey(5))
  lopt.save(tmp_path / "lo", lo, theta, {"num_steps": 50})
  loaded_lo, loaded_theta, card = lopt.load_meta_params(tmp_path / "lo", "adafac_mlp")
  assert loaded_lo == lo and card["architecture"] == "adafac_mlp"
  original, loaded = lopt.as_optax(lo, theta, 50), lopt.load(tmp_path / "lo")
  first_update = lambda tx: tx.update(jax.grad(loss)(params), tx.init(params), params)[0]
  expected, got = jax.jit(lambda: (first_update(original), first_update(loaded)))()
  jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_state_of_a_large_matrix_costs_about_adams_and_half_of_the_mlp_los():
  params = {"w": jax.ShapeDtypeStruct((4096, 1024), jnp.float32)}
  adafac, mlp = lopt.AdafacMLPLOpt(), lopt.MLPLOpt()
  state_bytes = lambda init: _state_bytes(jax.eval_shape(init, params))
  adafac_bytes = state_bytes(lambda p: adafac.init(None, p, 100))
  adam_bytes = state_bytes(optax.adam(1e-3).init)
  assert adafac_bytes <= 1.01 * adam_bytes
  assert adafac_bytes <= 0.51 * state_bytes(lambda p: mlp.init(None, p, 100))


def test_bad_sizes_fail_clearly():
  with pytest.raises(ValueError, match="hidden_size >= 2"):
    lopt.AdafacMLPLOpt(hidden_size=1)
  with pytest.raises(ValueError, match="at least one momentum decay and one second-moment decay"):
    lopt.AdafacMLPLOpt(second_moment_decays=())
