"""Hand-designed baselines: they train, follow their schedule, match optax, and reject bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt

# A learning rate from each baseline's search grid that trains the problem below in 100 steps.
WORKING_LEARNING_RATES = {"adam": 1e-2, "adamw": 1e-2, "lion": 3e-3, "sgd": 1e-1, "adafactor": 1e-1,
                          "muon": 1e-2}


def _regression_problem():
  """A two-layer tanh network fitting a random teacher network, full batch, in plain JAX."""
  kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  inputs = jax.random.normal(kx, (256, 16))
  targets = jnp.tanh(inputs @ jax.random.normal(kt, (16, 4)))

  def loss(params):
    hidden = jnp.tanh(inputs @ params["w1"] + params["b1"])
    return jnp.mean(jnp.square(hidden @ params["w2"] - targets))

  k1, k2 = jax.random.split(kp)
  params = {"w1": jax.random.normal(k1, (16, 32)) / 4, "b1": jnp.zeros(32),
            "w2": jax.random.normal(k2, (32, 4)) / 32**0.5}
  return loss, params


def _losses(tx, loss, params, num_steps):
  """The losses of ``num_steps`` steps of a plain optax loop (a jitted ``lax.scan``)."""
  def step(carry, _):
    params, opt_state = carry
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=num_steps)[1])
  return np.asarray(run(params))


@pytest.mark.parametrize("name", sorted(lopt.BASELINES))
def test_every_baseline_lowers_the_loss_at_a_learning_rate_of_its_grid(name):
  learning_rate = WORKING_LEARNING_RATES[name]
  assert learning_rate in {point["learning_rate"] for point in lopt.search_space(name)}
  weight_decay = 1e-2 if name in ("adamw", "muon") else 0.0
  loss, params = _regression_problem()
  losses = _losses(lopt.make_baseline(name, learning_rate, num_steps=100,
                                      weight_decay=weight_decay), loss, params, 100)
  assert np.all(np.isfinite(losses))
  assert losses[-5:].mean() < 0.3 * losses[0]


def test_warmup_cosine_schedule_warms_up_peaks_and_decays_to_zero():
  schedule = lopt.learning_rate_schedule(0.1, num_steps=200, warmup_fraction=0.1)
  value = lambda step: float(schedule(step))
  assert value(0) == 0.0
  assert value(10) == pytest.approx(0.05)  # Halfway through the 20 warmup steps.
  assert value(20) == pytest.approx(0.1)
  assert value(110) == pytest.approx(0.05, rel=1e-5)  # Halfway through the cosine.
  assert value(200) == pytest.approx(0.0, abs=1e-9)
  assert value(1000) == pytest.approx(0.0, abs=1e-9)


def test_constant_schedule_warms_up_then_holds_even_without_warmup():
  schedule = lopt.learning_rate_schedule(0.1, num_steps=100, warmup_fraction=0.1,
                                         schedule="constant")
  assert [float(schedule(s)) for s in (0, 5, 10, 100, 500)] == pytest.approx(
      [0.0, 0.05, 0.1, 0.1, 0.1])
  no_warmup = lopt.learning_rate_schedule(0.1, 100, warmup_fraction=0.0, schedule="constant")
  assert float(no_warmup(0)) == pytest.approx(0.1)


def test_baselines_take_the_schedule_and_decoupled_weight_decay_as_optax_does():
  schedule = lopt.learning_rate_schedule(1e-2, num_steps=50)
  references = {
      ("adamw", 0.1): optax.adamw(schedule, weight_decay=0.1),
      ("lion", 0.1): optax.lion(schedule, weight_decay=0.1),
      ("sgd", 0.0): optax.sgd(schedule, momentum=0.9),
      ("adafactor", 0.0): optax.adafactor(schedule),
  }
  params = {"w": jax.random.normal(jax.random.PRNGKey(0), (160, 130)), "b": jnp.ones(130)}
  for (name, weight_decay), reference in references.items():
    tx = lopt.make_baseline(name, 1e-2, num_steps=50, weight_decay=weight_decay)
    state, reference_state = tx.init(params), reference.init(params)
    for i in range(5):
      grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(i), p.shape), params)
      updates, state = jax.jit(tx.update)(grads, state, params)
      expected, reference_state = jax.jit(reference.update)(grads, reference_state, params)
      jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-9),
                   updates, expected)
      params = optax.apply_updates(params, updates)


def test_search_spaces_are_log_grids_of_valid_settings():
  for name in lopt.BASELINES:
    points = lopt.search_space(name)
    rates = sorted({point["learning_rate"] for point in points})
    assert len(rates) >= 5 and rates[-1] / rates[0] >= 1e3
    assert np.all(np.diff(np.log10(rates)) <= 0.53)  # At least two points per decade.
    for point in points:
      lopt.make_baseline(name, num_steps=10, **point)
  adamw = lopt.search_space("adamw")
  decays = {point["weight_decay"] for point in adamw}
  assert len(decays) >= 3 and len(adamw) == len(decays) * len(lopt.search_space("adam"))
  assert lopt.search_space("muon") == adamw


def test_bad_names_and_settings_fail_with_the_valid_choices():
  with pytest.raises(ValueError, match=r"unknown baseline optimizer 'adamax'; valid choices: "
                                       r"\['adafactor', 'adam', 'adamw', 'lion', 'muon', 'sgd'\]"):
    lopt.make_baseline("adamax", 1e-3, 100)
  with pytest.raises(ValueError, match="unknown baseline optimizer 'adamax'"):
    lopt.search_space("adamax")
  with pytest.raises(ValueError, match=r"unknown schedule 'linear'; valid choices: "
                                       r"\['warmup_cosine', 'constant'\]"):
    lopt.make_baseline("adam", 1e-3, 100, schedule="linear")
  with pytest.raises(ValueError, match="'adam' takes no weight decay; use 'adamw'"):
    lopt.make_baseline("adam", 1e-3, 100, weight_decay=0.1)
  with pytest.raises(ValueError, match="warmup_fraction"):
    lopt.make_baseline("adam", 1e-3, 100, warmup_fraction=1.0)
  with pytest.raises(ValueError, match="num_steps"):
    lopt.make_baseline("adam", 1e-3, 0)


def test_muon_matrix_updates_are_orthogonal_directions_of_adamw_rms():
  params = {"w": jnp.zeros((48, 96)), "kernel": jnp.zeros((3, 3, 4, 16)), "b": jnp.zeros(96)}
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(0), p.shape), params)
  learning_rate = 1e-2
  tx = lopt.make_baseline("muon", learning_rate, num_steps=100, warmup_fraction=0.0,
                          schedule="constant")
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  for name, fan_out in (("w", 96), ("kernel", 16)):
    update = np.asarray(updates[name])
    matrix = update.reshape(-1, fan_out)  # A conv kernel is a (3 * 3 * 4) x 16 matrix.
    rms = np.sqrt(np.mean(update**2))
    assert 0.1 * learning_rate < rms < 0.3 * learning_rate, name
    # Orthogonalised: every singular value near 0.2 sqrt(max(m, n)) lr (five Newton-Schulz
    # iterations leave them within about [0.7, 1.2] times that; a raw gradient's spread widely).
    singular_values = np.linalg.svd(matrix, compute_uv=False)
    scaled = singular_values / (0.2 * np.sqrt(max(matrix.shape)) * learning_rate)
    assert scaled.min() > 0.5 and scaled.max() < 1.5, (name, scaled)


def test_muon_gives_biases_adamw_updates_and_follows_the_schedule_and_decay():
  schedule = lopt.learning_rate_schedule(1e-2, num_steps=50)
  adamw = optax.adamw(schedule, weight_decay=0.1, nesterov=True)  # What optax's Muon runs on them.
  tx = lopt.make_baseline("muon", 1e-2, num_steps=50, weight_decay=0.1)
  reference = optax.contrib.muon(schedule, weight_decay=0.1, adam_weight_decay=0.1,
                                 consistent_rms=0.2)
  params = {"w": jax.random.normal(jax.random.PRNGKey(0), (24, 12)), "b": jnp.ones(12)}
  state, reference_state, adamw_state = tx.init(params), reference.init(params), adamw.init(
      params["b"])
  for i in range(5):
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(i), p.shape), params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    expected, reference_state = jax.jit(reference.update)(grads, reference_state, params)
    bias, adamw_state = jax.jit(adamw.update)(grads["b"], adamw_state, params["b"])
    jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-9),
                 updates, expected)
    np.testing.assert_allclose(updates["b"], bias, rtol=1e-5, atol=1e-9)
    params = optax.apply_updates(params, updates)


def test_muon_is_linear_in_the_learning_rate_as_tuning_builds_it():
  """``tune_baseline`` runs ``make_baseline(name, 1)`` times ``lr``; that must be ``make_baseline
  (name, lr)``, step after step, for the matrices, the conv kernels and the biases."""
  params = {"w": jax.random.normal(jax.random.PRNGKey(0), (16, 8)),
            "kernel": jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4)), "b": jnp.ones(8)}
  at_one = optax.chain(lopt.make_baseline("muon", 1.0, num_steps=20, weight_decay=0.1),
                       optax.scale(3e-3))
  direct = lopt.make_baseline("muon", 3e-3, num_steps=20, weight_decay=0.1)
  state, direct_state = at_one.init(params), direct.init(params)
  for i in range(5):
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(i), p.shape), params)
    updates, state = jax.jit(at_one.update)(grads, state, params)
    expected, direct_state = jax.jit(direct.update)(grads, direct_state, params)
    jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-10),
                 updates, expected)
    params = optax.apply_updates(params, updates)


def test_muon_trains_a_haiku_mlp_and_a_conv_kernel():
  import haiku as hk
  inputs = jax.random.normal(jax.random.PRNGKey(0), (128, 6, 6, 2))
  labels = jax.random.randint(jax.random.PRNGKey(1), (128,), 0, 4)

  def network(x):
    x = jax.nn.relu(hk.Conv2D(8, 3)(x))
    return hk.nets.MLP([32, 4])(x.reshape(len(x), -1))

  model = hk.without_apply_rng(hk.transform(network))
  params = model.init(jax.random.PRNGKey(2), inputs)
  assert {p.ndim for p in jax.tree.leaves(params)} == {1, 2, 4}
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply(p, inputs), labels).mean()
  losses = _losses(lopt.make_baseline("muon", 1e-2, num_steps=100, weight_decay=1e-2), loss,
                   params, 100)
  assert np.all(np.isfinite(losses))
  assert losses[-5:].mean() < 0.3 * losses[0]
