"""The digits MLP task family: determinism, roles, and that a sensible optimizer trains it."""

import jax
import numpy as np
import optax
import pytest

import tasks


@pytest.fixture
def task():
  family = tasks.MLPClassifierFamily(hidden_sizes=(32, 16), batch_size=64)
  return family.task(family.sample(jax.random.PRNGKey(0)), family.data())


def test_same_key_gives_same_batch_and_init(task):
  key = jax.random.PRNGKey(3)
  jax.tree.map(np.testing.assert_array_equal, task.batch(key, "train"), task.batch(key, "train"))
  jax.tree.map(np.testing.assert_array_equal, task.init(key), task.init(key))
  other = task.batch(jax.random.PRNGKey(4), "train")
  assert not np.array_equal(other["labels"], task.batch(key, "train")["labels"])


def test_roles_tag_input_hidden_output_and_vector(task):
  params = task.init(jax.random.PRNGKey(0))
  roles = task.roles(params)
  assert {name: roles[name]["w"] for name in roles} == {
      "input_0": "input", "hidden_1": "hidden", "output": "output"}
  assert {roles[name]["b"] for name in roles} == {"vector"}
  assert jax.tree.structure(roles) == jax.tree.structure(params)


def test_splits_are_disjoint_and_unknown_split_is_an_error(task):
  train, test = tasks.datasets.load("digits")["train"], tasks.datasets.load("digits")["test"]
  assert len(train[1]) + len(test[1]) == 1797 and len(test[1]) == 359
  with pytest.raises(ValueError, match=r"unknown split 'valid'; valid choices: \['train', 'test'\]"):
    task.batch(jax.random.PRNGKey(0), "valid")


def test_adam_trains_the_task(task):
  params = task.init(jax.random.PRNGKey(0))
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, key):
    grads = jax.grad(task.loss)(params, task.batch(key, "train"))
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  before = task.evaluate(params, "test")
  for i in range(200):
    params, opt_state = step(params, opt_state, jax.random.PRNGKey(i))
  after = task.evaluate(params, "test")
  assert float(after["loss"]) < 0.2 * float(before["loss"])
  assert float(after["accuracy"]) > 0.9


def test_the_cnn_convolution_is_haikus_3x3_same_convolution():
  import haiku as hk
  from tasks.mup import FAN_IN_INIT
  from tasks.networks import Conv3x3
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 8, 8, 3))  # Extra leading axes.
  ours = hk.without_apply_rng(hk.transform(lambda x: Conv3x3(5, name="conv")(x)))
  haikus = hk.without_apply_rng(hk.transform(
      lambda x: hk.Conv2D(5, 3, padding="SAME", w_init=FAN_IN_INIT, name="conv")(x)))
  flat = images.reshape(-1, 8, 8, 3)
  params = ours.init(jax.random.PRNGKey(1), images)
  jax.tree.map(np.testing.assert_array_equal, params, haikus.init(jax.random.PRNGKey(1), flat))
  params = jax.tree.map(lambda p: p + 0.1, params)
  np.testing.assert_allclose(ours.apply(params, images).reshape(-1, 8, 8, 5),
                             haikus.apply(params, flat), rtol=1e-5, atol=1e-5)
