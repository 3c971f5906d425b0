"""The meta-optimizer: today's Adam by default, and the schedule, weight decay and clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from metatrain.config import ConfigError
from metatrain.meta_optimizer import build_meta_optimizer, learning_rate


def _config(**outer):
  defaults = dict(steps=10, learning_rate=0.1, max_grad_norm=1.0, schedule="constant",
                  warmup_steps=0, final_learning_rate=0.0, weight_decay=0.0, clip="gradient")
  return ConfigDict({"outer": {**defaults, **outer}})


def _updates(meta_optimizer, theta, gradients):
  """The updates of ``meta_optimizer`` for the sequence ``gradients``, from ``theta``."""
  state, updates = meta_optimizer.init(theta), []
  for gradient in gradients:
    update, state = meta_optimizer.update(gradient, state, theta)
    updates.append(update)
  return updates


def test_the_default_is_adam_after_clipping_the_meta_gradient_as_before():
  """Same updates, and the same state (so that runs checkpointed before resume)."""
  before = optax.apply_if_finite(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1)),
                                 max_consecutive_errors=10)
  now = build_meta_optimizer(_config())
  theta = {"w": jnp.linspace(-1.0, 1.0, 5)}
  gradients = [{"w": 3.0 * jax.random.normal(k, (5,))}
               for k in jax.random.split(jax.random.PRNGKey(0), 4)]
  for a, b in zip(_updates(before, theta, gradients), _updates(now, theta, gradients)):
    np.testing.assert_array_equal(a["w"], b["w"])
  assert jax.tree.structure(before.init(theta)) == jax.tree.structure(now.init(theta))


def test_warmup_cosine_warms_up_linearly_then_decays_to_the_final_rate_at_the_last_step():
  """With a constant gradient Adam's direction is exactly 1 per coordinate, so each update is minus
  the learning rate of its outer step t = 1 .. steps."""
  config = _config(schedule="warmup_cosine", warmup_steps=4, final_learning_rate=0.01)
  updates = _updates(build_meta_optimizer(config), {"w": jnp.zeros(())},
                     [{"w": jnp.ones(())}] * 10)
  rates = -np.array([u["w"] for u in updates])
  t = np.arange(1, 11)
  expected = np.where(t <= 4, 0.1 * t / 4,
                      0.01 + 0.09 * (1 + np.cos(np.pi * (t - 4) / 6)) / 2)
  np.testing.assert_allclose(rates, expected, rtol=1e-4)
  assert rates[3] == pytest.approx(0.1, rel=1e-4) and rates[-1] == pytest.approx(0.01, rel=1e-4)
  assert learning_rate(_config().outer) == 0.1


def test_weight_decay_is_decoupled_from_adam():
  """With a zero gradient Adam's direction is 0 and AdamW's update is -lr * weight_decay * theta."""
  theta = {"w": jnp.array([1.0, -2.0, 4.0])}
  for clip in ("gradient", "update"):
    (update,) = _updates(build_meta_optimizer(_config(weight_decay=0.5, clip=clip)), theta,
                         [{"w": jnp.zeros(3)}])
    np.testing.assert_allclose(update["w"], -0.1 * 0.5 * theta["w"], rtol=1e-6)


def test_clipping_the_update_bounds_the_step_clipping_the_gradient_does_not():
  """Adam's first step is about lr * sign(g) per coordinate whatever the gradient's size: a global
  norm of 10 for 100 coordinates at lr 1. Clipping the gradient leaves it so; clipping the update
  brings it to max_grad_norm."""
  theta = {"w": jnp.zeros(100)}
  gradient = [{"w": 1e3 * jax.random.normal(jax.random.PRNGKey(1), (100,))}]
  norm = lambda clip: float(optax.global_norm(_updates(
      build_meta_optimizer(_config(learning_rate=1.0, clip=clip)), theta, gradient)[0]))
  assert norm("gradient") == pytest.approx(10.0, rel=1e-4)
  assert norm("update") == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("clip", ["gradient", "update"])
def test_a_non_finite_meta_gradient_is_skipped(clip):
  config = _config(schedule="warmup_cosine", warmup_steps=2, clip=clip)
  theta = {"w": jnp.ones(2)}
  skipped, after = _updates(build_meta_optimizer(config), theta,
                            [{"w": jnp.array([jnp.nan, 1.0])}, {"w": jnp.ones(2)}])
  np.testing.assert_array_equal(skipped["w"], [0.0, 0.0])
  np.testing.assert_allclose(after["w"], [-0.05, -0.05], rtol=1e-5)  # Still outer step 1's rate.


@pytest.mark.parametrize("overrides, message", [
    (("--config.outer.schedule=cosine",),
     "unknown schedule 'cosine'; valid choices: ['constant', 'warmup_cosine']"),
    (("--config.outer.schedule=warmup_cosine", "--config.outer.warmup_steps=6"),
     "config.outer.warmup_steps (6) must be in [0, steps = 6) for the warmup_cosine schedule"),
    (("--config.outer.clip=norm",), "unknown clip 'norm'; valid choices: ['gradient', 'update']"),
    (("--config.outer.weight_decay=-0.1",),
     "config.outer.weight_decay must be >= 0 (0: Adam), got -0.1"),
    (("--config.outer.final_learning_rate=-1",),
     "config.outer.final_learning_rate must be >= 0, got -1.0"),
])
def test_bad_meta_optimizer_settings_are_config_errors(overrides, message, tiny_config):
  with pytest.raises(ConfigError) as error:
    tiny_config(*overrides)
  assert message in str(error.value)
