"""μP: learning-rate factors per role, coordinate checks and learning-rate transfer across widths.

The coordinate check follows Tensor Programs V (Yang et al. 2022, fig. 5): train models of one
family at growing widths a few Adam steps at one learning rate and measure the mean |coordinate| of
every module's output on a fixed batch. Under μP (with ``mup_adam``'s ``lr / m`` for hidden weights)
every scale stays flat across widths; under SP with plain Adam the hidden and output scales grow
with width. It runs for every model family: MLP, CNN, ViT and the character Transformer LM.
"""

import dataclasses
from collections.abc import Callable

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks


def mlp_family(width, parametrization, base_width=64):
  return tasks.MLPClassifierFamily(hidden_sizes=(width, width), base_width=base_width,
                                   parametrization=parametrization, batch_size=64)


def mlp_task(width, parametrization, base_width=64):
  family = mlp_family(width, parametrization, base_width)
  return family.task(family.sample(jax.random.PRNGKey(0)), family.data())


def coordinate_sizes(task, params, batch):
  """Mean |coordinate| of the output of every module of the task's network on ``batch``."""
  sizes = {}

  def record(next_call, args, kwargs, context):
    out = next_call(*args, **kwargs)
    if context.method_name == "__call__":
      sizes[context.module.module_name] = jnp.mean(jnp.abs(out))
    return out

  with hk.intercept_methods(record):
    task.loss(params, batch)
  return sizes


def sizes_after_adam(family, steps=4, learning_rate=1e-2):
  """``coordinate_sizes`` on a fixed test batch after ``steps`` steps of ``mup_adam`` (plain Adam
  under SP) on a task of ``family``."""
  task_params, data = family.sample(jax.random.PRNGKey(0)), family.data()
  task = family.task(task_params, data)
  params = task.init(jax.random.PRNGKey(0))
  tx = tasks.mup_adam(learning_rate, task.lr_multipliers(params))

  @jax.jit
  def train(params, data):
    task = family.task(task_params, data)

    def step(carry, key):
      params, opt_state = carry
      updates, opt_state = tx.update(jax.grad(task.loss)(params, task.batch(key, "train")),
                                     opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    params = jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]
    return coordinate_sizes(task, params, task.batch(jax.random.PRNGKey(2), "test"))

  return jax.device_get(train(params, data))


def test_lr_multipliers_divide_hidden_weights_by_the_width_multiplier():
  params = jax.eval_shape(mlp_task(256, "mup").init, jax.random.PRNGKey(0))
  multipliers = mlp_task(256, "mup").lr_multipliers(params)
  assert multipliers == {"input_0": {"w": 1.0, "b": 1.0}, "hidden_1": {"w": 0.25, "b": 1.0},
                         "output": {"w": 1.0, "b": 1.0}}
  assert set(jax.tree.leaves(mlp_task(256, "sp").lr_multipliers(params))) == {1.0}


def test_mup_equals_sp_at_the_base_width_except_the_zero_readout():
  key = jax.random.PRNGKey(0)
  sp, mup = (jax.jit(mlp_task(64, p).init)(key) for p in ("sp", "mup"))
  for name in ("input_0", "hidden_1"):
    jax.tree.map(np.testing.assert_array_equal, sp[name], mup[name])
  assert not np.any(mup["output"]["w"]) and np.any(sp["output"]["w"])


@dataclasses.dataclass(frozen=True)
class CoordinateCheck:
  """The coordinate check of one model family.

  ``family(width, parametrization)`` is the family at ``width``, its base width ``widths[0]``;
  ``widths`` are checked by default and ``slow_widths`` by the slow test. Under SP the scale of
  each layer of ``sp_growth`` must grow by more than its factor from the first width to the last.
  """

  family: Callable[[int, str], tasks.TaskFamily]
  widths: tuple[int, ...]
  slow_widths: tuple[int, ...]
  learning_rate: float
  sp_growth: dict[str, float]


# A 3x3 convolution's fan-in is 9 times its width, so the CNN's Adam steps move its hidden
# pre-activations as far at 3e-3 as the other families' move at 1e-2.
COORDINATE_CHECKS = {
    "mlp": CoordinateCheck(mlp_family, (64, 1024), (64, 128, 256, 512, 1024), 1e-2,
                           {"hidden_1": 1.5, "output": 4.0}),
    "cnn": CoordinateCheck(
        lambda width, p: tasks.CNNClassifierFamily(width=width, depth=2, base_width=16,
                                                   parametrization=p, batch_size=32),
        (16, 128), (16, 32, 64, 128, 256), 3e-3, {"hidden_conv_1": 2.5, "output": 1.5}),
    "vit": CoordinateCheck(
        lambda width, p: tasks.ViTClassifierFamily(width=width, depth=1, num_heads=2,
                                                   base_width=32, parametrization=p,
                                                   batch_size=32),
        (32, 256), (32, 64, 128, 256, 512), 1e-2,
        {"hidden_attn_out_0": 4.0, "hidden_ffw_down_0": 2.0, "output": 2.0}),
    "char_lm": CoordinateCheck(
        lambda width, p: tasks.CharLMFamily(width=width, depth=1, num_heads=2, base_width=32,
                                            sequence_length=16, batch_size=16,
                                            parametrization=p),
        (32, 256), (32, 64, 128, 256, 512), 1e-2,
        {"hidden_attn_out_0": 2.0, "hidden_ffw_down_0": 3.0, "output": 1.8}),
}


@pytest.mark.parametrize("name,widths", [
    pytest.param(name, check.widths, id=name) for name, check in COORDINATE_CHECKS.items()] + [
    pytest.param(name, check.slow_widths, marks=pytest.mark.slow, id=f"{name}-slow")
    for name, check in COORDINATE_CHECKS.items()])
def test_coordinate_check(name, widths):
  check = COORDINATE_CHECKS[name]
  mup, sp = ([sizes_after_adam(check.family(width, p), learning_rate=check.learning_rate)
              for width in widths] for p in ("mup", "sp"))
  for layer in mup[0]:
    scales = np.array([sizes[layer] for sizes in mup])
    assert scales.max() < 1.6 * scales.min(), (layer, scales)
  for layer, factor in check.sp_growth.items():
    assert sp[-1][layer] / sp[0][layer] > factor, (layer, [sizes[layer] for sizes in sp])


def best_learning_rate_losses(width, parametrization, learning_rates, steps=150):
  """Mean training loss over the last 30 of ``steps`` Adam steps, per learning rate."""
  task = mlp_task(width, parametrization, base_width=128)
  params = task.init(jax.random.PRNGKey(0))
  multipliers = task.lr_multipliers(params)

  def final_loss(learning_rate):
    tx = tasks.mup_adam(learning_rate, multipliers)

    def step(carry, key):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(key, "train"))
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss
    losses = jax.lax.scan(step, (params, tx.init(params)),
                          jax.random.split(jax.random.PRNGKey(1), steps))[1]
    return losses[-30:].mean()

  return np.asarray(jax.jit(jax.vmap(final_loss))(jnp.asarray(learning_rates)))


@pytest.mark.slow
def test_best_adam_learning_rate_transfers_from_width_128_to_1024_under_mup():
  learning_rates = 10.0 ** np.arange(-3.5, -0.4, 0.5)
  narrow = best_learning_rate_losses(128, "mup", learning_rates)
  wide = best_learning_rate_losses(1024, "mup", learning_rates)
  at_narrow_best = wide[np.argmin(narrow)]
  assert at_narrow_best <= 1.25 * wide.min(), (narrow, wide)
  # Under SP the width-128 optimum is far from the best at width 1024.
  sp_narrow = best_learning_rate_losses(128, "sp", learning_rates)
  sp_wide = best_learning_rate_losses(1024, "sp", learning_rates)
  assert sp_wide[np.argmin(sp_narrow)] > 2.0 * sp_wide.min(), (sp_narrow, sp_wide)
