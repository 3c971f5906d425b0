"""μP: learning-rate factors per role, a coordinate check and learning-rate transfer across widths.

The coordinate check follows Tensor Programs V (Yang et al. 2022, fig. 5): train MLPs of growing
width a few Adam steps at one learning rate and measure the mean |coordinate| of every layer's
output on a fixed batch. Under μP (with ``mup_adam``'s ``lr / m`` for hidden weights) the scales
stay flat across widths; under SP with plain Adam the hidden and output scales grow with width.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks


def mlp_task(width, parametrization, base_width=64):
  family = tasks.MLPClassifierFamily(hidden_sizes=(width, width), base_width=base_width,
                                     parametrization=parametrization, batch_size=64)
  return family.task(family.sample(jax.random.PRNGKey(0)))


def coordinate_sizes(task, params, inputs):
  """Mean |coordinate| of the output of every layer of the task's network on ``inputs``."""
  def forward(x):
    sizes = {}

    def record(next_call, args, kwargs, context):
      out = next_call(*args, **kwargs)
      if context.method_name == "__call__":
        sizes[context.module.module_name] = jnp.mean(jnp.abs(out))
      return out

    with hk.intercept_methods(record):
      task.family.network(x, 10)
    return sizes

  return hk.without_apply_rng(hk.transform(forward)).apply(params, inputs)


def sizes_after_adam(width, parametrization, steps=4, learning_rate=1e-2):
  task = mlp_task(width, parametrization)
  params = task.init(jax.random.PRNGKey(0))
  tx = tasks.mup_adam(learning_rate, task.lr_multipliers(params))

  @jax.jit
  def train(params):
    def step(carry, key):
      params, opt_state = carry
      updates, opt_state = tx.update(jax.grad(task.loss)(params, task.batch(key, "train")),
                                     opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    keys = jax.random.split(jax.random.PRNGKey(1), steps)
    params = jax.lax.scan(step, (params, tx.init(params)), keys)[0][0]
    return coordinate_sizes(task, params, task.batch(jax.random.PRNGKey(2), "test")["inputs"])

  return jax.device_get(train(params))


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


@pytest.mark.parametrize("widths", [(64, 1024), pytest.param((64, 128, 256, 512, 1024),
                                                             marks=pytest.mark.slow)])
def test_coordinate_check(widths):
  mup = [sizes_after_adam(width, "mup") for width in widths]
  sp = [sizes_after_adam(width, "sp") for width in widths]
  for layer in ("input_0", "hidden_1", "output"):
    scales = np.array([sizes[layer] for sizes in mup])
    assert scales.max() < 1.6 * scales.min(), (layer, scales)
  growth = lambda sizes, layer: sizes[-1][layer] / sizes[0][layer]
  assert growth(sp, "hidden_1") > 1.5 and growth(sp, "output") > 4.0, sp


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
