"""Every task family: Adam trains it, vmap over task_params matches a loop, batches are reproducible.

Families are small so that each test takes a few seconds on a CPU; task variations (data subsets,
label noise, input scales) are switched on so that the tasks of a population really differ.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks

VARIED = dict(min_subset=0.5, label_noise=0.2, input_scale=2.0)
# name -> (family, Adam learning rate, fraction of its first losses that training must get below).
CASES = {
    "mlp": (tasks.MLPClassifierFamily(hidden_sizes=(32, 16), batch_size=32, **VARIED), 1e-2, 0.5),
    "cnn": (tasks.CNNClassifierFamily(width=16, depth=2, batch_size=32, **VARIED), 3e-2, 0.5),
    "vit": (tasks.ViTClassifierFamily(width=16, depth=1, base_width=16, batch_size=32, **VARIED),
            1e-2, 0.5),
    "char_lm": (tasks.CharLMFamily(width=16, depth=1, base_width=16, sequence_length=16,
                                   batch_size=8, min_subset=0.5), 1e-2, 0.7),
    "teacher_regression": (tasks.TeacherFamily(), 1e-2, 0.3),
    "teacher_classification": (tasks.TeacherFamily(kind="classification"), 1e-2, 0.5),
    "quadratic": (tasks.QuadraticFamily(), 1e-1, 0.3),
}
STEPS = 200
# Compiling a training on a 2-core CPU takes seconds; these run in the default suite, the rest
# of CASES only with the slow tests.
FAST = ("char_lm", "mlp", "quadratic", "teacher_regression")
SLOW = pytest.mark.slow


def cases(fast=FAST):
  return [case if case in fast else pytest.param(case, marks=SLOW) for case in sorted(CASES)]


@functools.lru_cache(maxsize=None)
def task_params_and_params(case):
  """The arrays of a task of ``CASES[case]`` and its initial parameters, drawn once per session."""
  family = CASES[case][0]
  task_params = family.sample(jax.random.PRNGKey(0))
  return task_params, jax.jit(family.task(task_params, family.data()).init)(jax.random.PRNGKey(1))


def train_losses(task, params, learning_rate, steps, key):
  """Final parameters and batch losses of ``steps`` Adam steps from ``params``, in one scan."""
  tx = optax.adam(learning_rate)

  def step(carry, batch_key):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(batch_key, "train"))
    updates, opt_state = tx.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
  return params, losses


@pytest.mark.parametrize("case", cases())
def test_adam_lowers_the_loss(case):
  family, learning_rate, fraction = CASES[case]
  task_params, initial = task_params_and_params(case)

  @jax.jit
  def run(params, key, data):
    task = family.task(task_params, data)
    trained, losses = train_losses(task, params, learning_rate, STEPS, key)
    return losses, task.evaluate(params, "test")["loss"], task.evaluate(trained, "test")["loss"]

  losses, before, after = jax.device_get(run(initial, jax.random.PRNGKey(2), family.data()))
  assert np.all(np.isfinite(losses))
  assert losses[-20:].mean() < fraction * losses[:5].mean()
  assert after < before


@pytest.mark.parametrize("case", cases())
def test_vmap_over_task_params_matches_a_python_loop(case):
  family = CASES[case][0]
  params = task_params_and_params(case)[1]
  keys, data = jax.random.split(jax.random.PRNGKey(2), 3), family.data()

  def loss_of_task(task_key, data):
    task_params_key, batch_key = jax.random.split(task_key)
    task = family.task(family.sample(task_params_key), data)
    return task.loss(params, task.batch(batch_key, "train"))

  one = jax.jit(loss_of_task)
  looped = np.array([one(key, data) for key in keys])
  mapped = np.asarray(jax.jit(jax.vmap(loss_of_task, in_axes=(0, None)))(keys, data))
  np.testing.assert_allclose(mapped, looped, rtol=2e-5, atol=1e-6)
  assert len(np.unique(looped)) == len(keys)  # The three tasks differ.


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_key_gives_same_task_and_batches(case):
  family = CASES[case][0]

  @jax.jit
  def draw(key, data):
    task = family.task(family.sample(key), data)
    return family.sample(key), [task.batch(key, split) for split in tasks.SPLITS]

  data = family.data()
  first, again, other = (draw(jax.random.PRNGKey(k), data) for k in (3, 3, 4))
  jax.tree.map(np.testing.assert_array_equal, first, again)
  train_batch = lambda drawn: jax.tree.leaves(drawn[1][0])
  assert not all(np.array_equal(a, b) for a, b in zip(train_batch(first), train_batch(other)))
  task = family.task(family.sample(jax.random.PRNGKey(3)), family.data())
  with pytest.raises(ValueError, match=r"unknown split 'valid'; valid choices: \['train', 'test'\]"):
    task.batch(jax.random.PRNGKey(3), "valid")


@pytest.mark.parametrize("case", sorted(CASES))
def test_roles_and_lr_multipliers_cover_every_parameter(case):
  family = CASES[case][0]
  task = family.task(family.sample(jax.random.PRNGKey(0)), family.data())
  params = jax.eval_shape(task.init, jax.random.PRNGKey(0))
  roles = task.roles(params)
  assert jax.tree.structure(roles) == jax.tree.structure(params)
  assert set(jax.tree.leaves(roles)) <= set(tasks.ROLES)
  for role, param in zip(jax.tree.leaves(roles), jax.tree.leaves(params)):
    assert (role == "vector") == (param.ndim <= 1)
  if case != "quadratic":
    assert {"input", "output", "vector"} <= set(jax.tree.leaves(roles))
  multipliers = task.lr_multipliers(params)
  assert jax.tree.structure(multipliers) == jax.tree.structure(params)
  assert set(jax.tree.leaves(multipliers)) == {1.0}  # SP, and base width for μP families.


def test_every_registered_family_is_a_frozen_dataclass_built_by_name():
  for name, family_type in tasks.FAMILIES.items():
    family = tasks.make_family(name)
    assert family.name == name and dataclasses.is_dataclass(family)
    with pytest.raises(dataclasses.FrozenInstanceError):
      family.batch_size = 1
    jax.tree.map(lambda leaf: isinstance(leaf, jax.Array) or pytest.fail(f"{name}: {leaf!r}"),
                 family.sample(jax.random.PRNGKey(0)))
  with pytest.raises(ValueError, match=r"unknown task family 'rnn'; valid choices: \["):
    tasks.make_family("rnn")


@pytest.mark.parametrize("make, message", [
    (lambda: tasks.MLPClassifierFamily(dataset="imagenet"),
     r"unknown dataset 'imagenet'; valid choices: "
     r"\['digits', 'mnist', 'fashion_mnist', 'cifar10'\]"),
    (lambda: tasks.CNNClassifierFamily(parametrization="ntk"),
     r"unknown parametrization 'ntk'; valid choices: \['sp', 'mup'\]"),
    (lambda: tasks.CharLMFamily(corpus="shakespeare"),
     r"unknown text corpus 'shakespeare'; valid choices: \['python_docs', 'tiny_shakespeare'\]"),
    (lambda: tasks.TeacherFamily(kind="ranking"),
     r"unknown teacher kind 'ranking'; valid choices: \['regression', 'classification'\]"),
    (lambda: tasks.ViTClassifierFamily(patch_size=3),
     r"patch_size \(3\) must divide the image size \(8\)"),
    (lambda: tasks.ViTClassifierFamily(width=30, num_heads=4),
     r"num_heads \(4\) must divide width \(30\)"),
    (lambda: tasks.CharLMFamily(width=48, num_heads=3, base_width=32),
     r"num_heads \(3\) must divide base_width \(32\)"),
    (lambda: tasks.MLPClassifierFamily(hidden_sizes=()), r"hidden_sizes must be one or more"),
    (lambda: tasks.MLPClassifierFamily(label_noise=1.5), r"label_noise must be in \[0, 1\], got 1.5"),
    (lambda: tasks.CNNClassifierFamily(min_subset=0.0), r"min_subset must be in \(0, 1\], got 0.0"),
])
def test_bad_settings_name_the_value_and_the_valid_choices(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_vit_patch_size_must_divide_the_image_in_the_network_too():
  import haiku as hk
  forward = hk.transform(lambda x: tasks.transformer.vit(x, 10, 4, 16, 1, 2, "sp", 16))
  with pytest.raises(ValueError, match=r"patch_size \(4\) must divide the image size \(10\)"):
    forward.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 1)))
