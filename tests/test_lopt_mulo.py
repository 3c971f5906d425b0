"""μLO: role-scaled updates and their width behaviour on μP MLPs, roles (given or inferred), the
optax export, save/load."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
import tasks

MU_AND_BASE = [(lopt.MuMLPLOpt(hidden_size=8, base_fan_in=16), lopt.MLPLOpt(hidden_size=8)),
               (lopt.MuAdafacMLPLOpt(base_fan_in=16), lopt.AdafacMLPLOpt())]


def _mup_mlp_task(width):
  family = tasks.MLPClassifierFamily(hidden_sizes=(width, width), parametrization="mup",
                                     base_width=64, batch_size=32)
  return family.task(family.sample(jax.random.PRNGKey(0)), family.data())


@jax.jit
def _spectral_norm(a):
  """The largest singular value of the matrix ``a`` by power iteration (an SVD costs seconds)."""

  def power_step(_, v):
    v = a.T @ (a @ v)
    return v / jnp.linalg.norm(v)

  v = jax.lax.fori_loop(0, 50, power_step, jnp.ones(a.shape[1]) / np.sqrt(a.shape[1]))
  return jnp.linalg.norm(a @ v)


def _relative_hidden_updates(los, theta, width, num_steps=4):
  """For each LO, ``||W_T - W_0||_2 / ||W_0||_2`` (spectral norms) of the hidden matrix of a μP
  MLP of ``width`` after ``num_steps`` steps of a plain optax loop."""
  task = _mup_mlp_task(width)
  params = jax.jit(task.init)(jax.random.PRNGKey(1))
  keys = jax.random.split(jax.random.PRNGKey(2), num_steps)

  def train(tx):
    def step(carry, key):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(key, "train"))
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      return (optax.apply_updates(params, updates), opt_state), loss

    return jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]["hidden_1"]["w"]

  txs = [lopt.as_optax(lo, theta, 100, task.roles(params)) for lo in los]
  w0 = params["hidden_1"]["w"]
  return [float(_spectral_norm(w - w0) / _spectral_norm(w0))
          for w in jax.jit(lambda: [train(tx) for tx in txs])()]


@pytest.mark.slow
def test_relative_hidden_updates_stay_flat_with_width_for_the_mulo_but_grow_for_the_sp_lo():
  """Spectral norms, the norm μP controls: a W of iid entries of variance 1/n has ||W||_2 ~ 2 at
  every width, and an update of O(eta) entries correlated across rows (low rank: a few steps of a
  small batch) has ||dW||_2 ~ eta n. The SP LO's ratio grows like n (16x from 64 to 1024), the μLO's
  stays within 1.5x. (Frobenius norms would mislead: they add the n^2 entries of dW regardless of
  their rank.)"""
  widths = (64, 256, 1024)
  theta = jax.jit(lopt.MLPLOpt(hidden_size=8).init_meta_params)(jax.random.PRNGKey(0))
  los = lopt.MLPLOpt(hidden_size=8), lopt.MuMLPLOpt(hidden_size=8, base_fan_in=64)
  sp, mu = zip(*[_relative_hidden_updates(los, theta, w) for w in widths])
  assert max(mu) / min(mu) < 1.5, mu
  assert sp[-1] / sp[0] > 8 and sp[0] < sp[1] < sp[2], sp
  np.testing.assert_allclose(mu[0], sp[0], rtol=1e-5)  # Same steps at the base fan-in.


@pytest.mark.parametrize("mu, base", MU_AND_BASE, ids=lambda lo: lo.name)
def test_updates_are_the_base_updates_scaled_by_role(mu, base):
  rng = np.random.default_rng(0)
  params = {"input": {"w": rng.standard_normal((5, 48), np.float32)},
            "conv": {"w": rng.standard_normal((3, 3, 4, 8), np.float32)},
            "hidden": {"w": rng.standard_normal((48, 48)).astype(jnp.bfloat16),
                       "b": np.zeros((48,), jnp.bfloat16)},
            "output": {"w": rng.standard_normal((48, 10), np.float32)}}
  roles = {"input": {"w": "input"}, "conv": {"w": "hidden"},
           "hidden": {"w": "hidden", "b": "vector"}, "output": {"w": "output"}}
  factors = {"input": {"w": 1.0}, "conv": {"w": 16 / 36}, "hidden": {"w": 16 / 48, "b": 1.0},
             "output": {"w": 1.0}}
  grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
  theta = jax.jit(base.init_meta_params)(jax.random.PRNGKey(0))
  step = jax.jit(lambda states: [lo.update(theta, state, grads, params)
                                 for lo, state in zip((mu, base), states)])
  states = mu.init(theta, params, 10, roles), base.init(theta, params, 10)
  for _ in range(2):
    (mu_updates, mu_state), (base_updates, base_state) = step(states)
    states = mu_state, base_state
  expected = jax.tree.map(lambda u, f: (u * jnp.float32(f)).astype(u.dtype), base_updates, factors)
  jax.tree.map(np.testing.assert_array_equal, mu_updates, expected)
  assert jax.tree.map(lambda u: u.dtype, mu_updates) == jax.tree.map(lambda p: p.dtype, params)
  jax.tree.map(np.testing.assert_array_equal, mu_state.inner, base_state)


def test_state_is_arrays_that_vmap_over_a_population():
  lo = lopt.MuAdafacMLPLOpt(base_fan_in=8)
  tx = lopt.as_optax(lo, jax.jit(lo.init_meta_params)(jax.random.PRNGKey(0)), 10)
  params = {"input_0": {"w": jnp.ones((3, 5, 16))}, "hidden_1": {"w": jnp.ones((3, 16, 16)),
                                                                "b": jnp.ones((3, 16))}}
  state = jax.vmap(tx.init)(params)
  np.testing.assert_array_equal(state.multipliers["hidden_1"]["w"], [0.5] * 3)
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(state))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = jax.jit(jax.vmap(tx.update))(grads, state, params)
  assert jax.tree.map(np.shape, updates) == jax.tree.map(np.shape, params)


def _named_mlp_problem(width):
  """A small regression MLP with parameters named as ``tasks`` names them: ``(loss, params)``."""
  rng = np.random.default_rng(0)
  sizes = {"input_0": (4, width), "hidden_1": (width, width), "output": (width, 3)}
  params = {name: {"w": rng.standard_normal(shape, np.float32) / np.sqrt(shape[0]),
                   "b": np.zeros(shape[1], np.float32)} for name, shape in sizes.items()}
  inputs = rng.standard_normal((32, 4), np.float32)
  targets = rng.standard_normal((32, 3), np.float32)

  def loss(params):
    x = inputs
    for name in sizes:
      x = x @ params[name]["w"] + params[name]["b"]
      x = jax.nn.relu(x) if name != "output" else x
    return jnp.mean(jnp.square(x - targets))

  return loss, params


def test_export_gives_the_same_updates_as_the_internal_call_with_given_or_inferred_roles():
  loss, params = _named_mlp_problem(32)
  roles = {"input_0": {"w": "input", "b": "vector"}, "hidden_1": {"w": "hidden", "b": "vector"},
           "output": {"w": "output", "b": "vector"}}
  lo = lopt.MuMLPLOpt(hidden_size=8, base_fan_in=16)
  theta = jax.jit(lo.init_meta_params)(jax.random.PRNGKey(2))
  txs = lopt.as_optax(lo, theta, 100, roles), lopt.as_optax(lo, theta, 100, "infer")

  def step(carry, _):
    params, tx_states, lo_state = carry
    value, grads = jax.value_and_grad(loss)(params)
    tx_results = [tx.update(grads, s, params, value=value) for tx, s in zip(txs, tx_states)]
    lo_updates, lo_state = lo.update(theta, lo_state, grads, params, value)
    carry = optax.apply_updates(params, lo_updates), [s for _, s in tx_results], lo_state
    return carry, ([u for u, _ in tx_results], lo_updates)

  init = params, [tx.init(params) for tx in txs], lo.init(theta, params, 100, roles)
  (_, _, lo_state), (tx_updates, lo_updates) = jax.jit(
      lambda carry: jax.lax.scan(step, carry, length=3))(init)
  for updates in tx_updates:
    jax.tree.map(np.testing.assert_array_equal, updates, lo_updates)
  assert float(lo_state.multipliers["hidden_1"]["w"]) == 0.5


def test_a_mulo_given_no_roles_warns_once_with_what_it_inferred_and_infer_silences_it(recwarn):
  _, params = _named_mlp_problem(8)
  lo = lopt.MuMLPLOpt(hidden_size=4)
  theta = lo.init_meta_params(jax.random.PRNGKey(0))
  with pytest.warns(UserWarning, match=r"no roles=; it inferred input: \['input_0'\]\['w'\]; "
                                       r"hidden: \['hidden_1'\]\['w'\]; output: \['output'\]\['w'\]; "
                                       r"3 vector tensors\. .*roles='infer'"):
    guessed = lopt.as_optax(lo, theta, 10).init(params)
  recwarn.clear()
  inferred = lopt.as_optax(lo, theta, 10, roles="infer").init(params)
  lopt.as_optax(lopt.MLPLOpt(hidden_size=4), lopt.MLPLOpt(hidden_size=4).init_meta_params(
      jax.random.PRNGKey(0)), 10).init(params)  # An SP optimizer reads no roles: no warning.
  assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
  jax.tree.map(np.testing.assert_array_equal, guessed, inferred)
  with pytest.raises(ValueError, match="roles must be a pytree like the parameters, None or 'infer'"):
    lopt.as_optax(lo, theta, 10, roles="guess")


def test_roles_with_a_wrong_string_or_structure_fail_clearly():
  lo = lopt.MuMLPLOpt(hidden_size=4)
  params = {"a": {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}}
  with pytest.raises(ValueError, match=r"unknown role 'hiden' for the parameter at \['a'\]\['w'\]; "
                                       r"valid roles: \['input', 'hidden', 'output', 'vector'\]"):
    lo.init(None, params, 10, {"a": {"w": "hiden", "b": "vector"}})
  with pytest.raises(ValueError, match="structure of the parameters"):
    lopt.as_optax(lo, None, 10, roles={"a": "hidden"}).init(params)


def test_bad_base_fan_in_fails_clearly():
  with pytest.raises(ValueError, match="MuAdafacMLPLOpt needs base_fan_in > 0"):
    lopt.make("mu_adafac_mlp", base_fan_in=0)


def test_save_then_load_keeps_the_architecture(tmp_path):
  lo = lopt.make("mu_adafac_mlp", hidden_size=8, base_fan_in=16)
  theta = jax.jit(lo.init_meta_params)(jax.random.PRNGKey(5))
  lopt.save(tmp_path / "lo", lo, theta, {"num_steps": 50})
  loaded_lo, _, card = lopt.load_meta_params(tmp_path / "lo", "mu_adafac_mlp")
  assert loaded_lo == lo and card["hyperparameters"]["base_fan_in"] == 16
  params = {"a": {"w": jnp.ones((32, 32)), "b": jnp.ones(32)}}
  grads = jax.tree.map(lambda p: jnp.linspace(-1, 1, p.size).reshape(p.shape), params)
  roles = {"a": {"w": "hidden", "b": "vector"}}
  original, loaded = lopt.as_optax(lo, theta, 50, roles), lopt.load(tmp_path / "lo", roles=roles)
  first_update = lambda tx: tx.update(grads, tx.init(params), params)[0]
  expected, got = jax.jit(lambda: (first_update(original), first_update(loaded)))()
  jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_lopt_knows_the_roles_of_tasks():
  assert lopt.ROLES == tasks.ROLES


@pytest.mark.parametrize("family", [
    tasks.MLPClassifierFamily(hidden_sizes=(16, 16)), tasks.CNNClassifierFamily(width=8),
    tasks.ViTClassifierFamily()], ids=lambda f: f.name)
def test_inferred_roles_match_the_roles_of_tasks_models(family):
  task = family.task(family.sample(jax.random.PRNGKey(0)), family.data())
  params = jax.eval_shape(task.init, jax.random.PRNGKey(0))
  assert lopt.infer_roles(params) == task.roles(params)


def test_inferred_roles_of_unnamed_models_follow_the_natural_order_of_their_paths():
  x = jnp.ones((2, 3))
  mlp = hk.transform(lambda x: hk.nets.MLP([4, 4, 2])(hk.Embed(5, 3)(jnp.zeros(2, int)) + x))
  params = jax.eval_shape(mlp.init, jax.random.PRNGKey(0), x)
  assert lopt.infer_roles(params) == {
      "embed": {"embeddings": "input"}, "mlp/~/linear_0": {"w": "hidden", "b": "vector"},
      "mlp/~/linear_1": {"w": "hidden", "b": "vector"},
      "mlp/~/linear_2": {"w": "output", "b": "vector"}}
  dense = {f"Dense_{i}": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)} for i in (0, 2, 10)}
  roles = lopt.infer_roles({"params": dense | {"LayerNorm_0": {"scale": jnp.ones(3)}}})["params"]
  assert [roles[f"Dense_{i}"]["kernel"] for i in (0, 2, 10)] == ["input", "hidden", "output"]
  assert roles["LayerNorm_0"] == {"scale": "vector"}
  attention = {name: {"kernel": jnp.ones((3, 2, 2))} for name in ("query", "key", "value", "out")}
  roles = lopt.infer_roles({"MultiHeadDotProductAttention_0": attention, "Embed_0": {
      "embedding": jnp.ones((7, 3))}, "lm_head": {"kernel": jnp.ones((3, 7))}})
  assert roles["Embed_0"]["embedding"] == "input" and roles["lm_head"]["kernel"] == "output"
  assert {r["kernel"] for r in roles["MultiHeadDotProductAttention_0"].values()} == {"hidden"}
