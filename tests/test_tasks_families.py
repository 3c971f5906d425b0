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
from tasks import reparameterization

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
    (lambda: tasks.MLPClassifierFamily(param_scale_range=(0.0, 1.0)),
     r"param_scale_range must be \(low, high\) with 0 < low <= high .*got \(0.0, 1.0\)"),
    (lambda: tasks.QuadraticFamily(param_scale_range=(10.0, 0.1)),
     r"param_scale_range must be \(low, high\) with 0 < low <= high .*got \(10.0, 0.1\)"),
    (lambda: tasks.CharLMFamily(param_scale_range=(2.0,)), r"param_scale_range .*got \(2.0,\)"),
])
def test_bad_settings_name_the_value_and_the_valid_choices(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_vit_patch_size_must_divide_the_image_in_the_network_too():
  import haiku as hk
  forward = hk.transform(lambda x: tasks.transformer.vit(x, 10, 4, 16, 1, 2, "sp", 16))
  with pytest.raises(ValueError, match=r"patch_size \(4\) must divide the image size \(10\)"):
    forward.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 1)))


SCALED = (0.1, 10.0)


@pytest.mark.parametrize("case", cases())
def test_a_param_scale_stores_parameters_c_times_smaller_with_c_times_larger_gradients(case):
  """The task of the same key with and without ``param_scale_range``: the same task at init (same
  draws, batches and losses), its parameters divided and its gradients multiplied by its ``c``."""
  family = CASES[case][0]
  scaled = dataclasses.replace(family, param_scale_range=SCALED)
  key = jax.random.PRNGKey(5)

  @jax.jit
  def draw(data):
    out = {}
    for name, fam in (("base", family), ("scaled", scaled)):
      task_params = fam.sample(key)
      task = fam.task(task_params, data)
      params, batch = task.init(key), task.batch(key, "train")
      loss, grads = jax.value_and_grad(task.loss)(params, batch)
      out[name] = dict(task_params=task_params, params=params, batch=batch, loss=loss,
                       grads=grads, test_loss=task.evaluate(params, "test")["loss"])
    return out

  drawn = jax.device_get(draw(family.data()))
  base, scaled_task = drawn["base"], drawn["scaled"]
  c = scaled_task["task_params"].pop(reparameterization.PARAM_SCALE)
  assert SCALED[0] <= c <= SCALED[1] and c != 1.0
  jax.tree.map(np.testing.assert_array_equal, scaled_task["task_params"], base["task_params"])
  jax.tree.map(np.testing.assert_array_equal, scaled_task["batch"], base["batch"])
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-7)
  jax.tree.map(lambda q, p: close(q, p / c), scaled_task["params"], base["params"])
  jax.tree.map(lambda h, g: close(h, c * g), scaled_task["grads"], base["grads"])
  close(scaled_task["loss"], base["loss"])
  close(scaled_task["test_loss"], base["test_loss"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_param_scale_is_off_by_default_and_leaves_the_task_as_it_was(case):
  family = CASES[case][0]
  assert family.param_scale_range == (1.0, 1.0)
  task_params = family.sample(jax.random.PRNGKey(0))
  assert reparameterization.PARAM_SCALE not in task_params  # The same draws and arrays...
  task = family.task(task_params, family.data())
  assert not isinstance(task, reparameterization.ParamScaledTask)  # ...and the same task.


def test_param_scales_are_log_uniform_per_task_and_a_population_vmaps_over_them():
  family = tasks.QuadraticFamily(dim=4, param_scale_range=SCALED)
  keys = jax.random.split(jax.random.PRNGKey(0), 2000)
  log_scales = np.log10(jax.vmap(family.sample)(keys)[reparameterization.PARAM_SCALE])
  assert -1.0 <= log_scales.min() and log_scales.max() <= 1.0
  np.testing.assert_allclose(np.quantile(log_scales, [0.25, 0.5, 0.75]), [-0.5, 0.0, 0.5],
                             atol=0.1)

  def initial_loss(fam, key):
    task = fam.task(fam.sample(key), {})
    return task.loss(task.init(key), task.batch(key, "train"))

  population = jax.jit(jax.vmap(functools.partial(initial_loss, family)))(keys[:8])
  base = jax.jit(jax.vmap(functools.partial(initial_loss, tasks.QuadraticFamily(dim=4))))(keys[:8])
  np.testing.assert_allclose(population, base, rtol=1e-4)
  fixed = tasks.QuadraticFamily(dim=4, param_scale_range=(3.0, 3.0))
  np.testing.assert_allclose(jax.vmap(fixed.sample)(keys[:8])[reparameterization.PARAM_SCALE], 3.0,
                             rtol=1e-6)


def test_param_scaled_families_keep_their_roles_and_build_by_name_and_in_mixtures():
  family = tasks.make_family("mlp_classifier", hidden_sizes=(8,), param_scale_range=SCALED)
  assert family.param_scale_range == SCALED and family.name == "mlp_classifier"
  assert tasks.family_roles(family) == tasks.family_roles(tasks.MLPClassifierFamily(
      hidden_sizes=(8,)))
  wider = family.at_base_width()
  assert wider.param_scale_range == SCALED and type(wider) is type(family)
  mixture = tasks.make_mixture({"q": {"name": "quadratic", "weight": 1.0,
                                      "param_scale_range": SCALED}})
  assert mixture.families[0].param_scale_range == SCALED
