"""The exported learned optimizers train flax models: linen in a plain optax loop, nnx through
``nnx.Optimizer``; mixed float32 / bfloat16 parameters keep their dtypes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lopt

NUM_STEPS = 50
LOS = [lopt.MLPLOpt(hidden_size=8), lopt.MuMLPLOpt(hidden_size=8, base_fan_in=16)]


@pytest.fixture(scope="module")
def data():
  """256 points in 8 dimensions labelled in 4 classes by a random linear teacher."""
  rng = np.random.default_rng(0)
  inputs = rng.standard_normal((256, 8)).astype(np.float32)
  labels = np.argmax(inputs @ rng.standard_normal((8, 4)), axis=-1)
  return inputs, labels


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def _export(lo):
  """``lo`` with its initial meta-parameters as optax, roles inferred (μLO) from the parameters."""
  return lopt.as_optax(lo, jax.jit(lo.init_meta_params)(jax.random.PRNGKey(0)), NUM_STEPS)


class LinenMLP(nn.Module):
  """``Dense_0`` (input), ``Dense_1`` (hidden, bfloat16 parameters), ``Dense_2`` (output)."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(32)(x))
    x = nn.relu(nn.Dense(32, param_dtype=jnp.bfloat16, dtype=jnp.float32)(x))
    return nn.Dense(4)(x)


class NNXMLP(nnx.Module):
  """``hidden`` has bfloat16 parameters; ``layers`` are unnamed and come in order."""

  def __init__(self, rngs: nnx.Rngs):
    self.layers = nnx.List([nnx.Linear(8, 32, rngs=rngs),
                            nnx.Linear(32, 32, param_dtype=jnp.bfloat16, rngs=rngs),
                            nnx.Linear(32, 4, rngs=rngs)])

  def __call__(self, x):
    for layer in self.layers[:-1]:
      x = nnx.relu(layer(x).astype(jnp.float32))
    return self.layers[-1](x)


@pytest.mark.parametrize("lo", LOS, ids=lambda lo: lo.name)
def test_exported_lo_trains_a_flax_linen_model_and_keeps_dtypes(data, lo):
  inputs, labels = data
  model = LinenMLP()
  params = model.init(jax.random.PRNGKey(1), inputs[:1])
  assert lopt.infer_roles(params)["params"] == {
      "Dense_0": {"kernel": "input", "bias": "vector"},
      "Dense_1": {"kernel": "hidden", "bias": "vector"},
      "Dense_2": {"kernel": "output", "bias": "vector"}}
  tx = _export(lo)
  loss_fn = lambda p: _cross_entropy(model.apply(p, inputs), labels)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return (optax.apply_updates(params, updates), opt_state), loss

  (trained, _), losses = jax.jit(
      lambda p: jax.lax.scan(step, (p, tx.init(p)), length=NUM_STEPS))(params)
  assert losses[-5:].mean() < 0.8 * losses[:3].mean(), losses
  assert jax.tree.map(lambda p: p.dtype, trained) == jax.tree.map(lambda p: p.dtype, params)
  assert trained["params"]["Dense_1"]["kernel"].dtype == jnp.bfloat16


@pytest.mark.parametrize("lo", LOS, ids=lambda lo: lo.name)
def test_exported_lo_trains_a_flax_nnx_model_through_nnx_optimizer(data, lo):
  inputs, labels = data
  model = NNXMLP(nnx.Rngs(1))
  assert nnx.to_pure_dict(lopt.infer_roles(nnx.state(model, nnx.Param))) == {"layers": {
      0: {"kernel": "input", "bias": "vector"}, 1: {"kernel": "hidden", "bias": "vector"},
      2: {"kernel": "output", "bias": "vector"}}}
  optimizer = nnx.Optimizer(model, _export(lo), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: _cross_entropy(m(inputs), labels))(model)
    updates = optimizer.update(model, grads, value=loss)
    return loss, updates

  losses = []
  for _ in range(NUM_STEPS):
    loss, updates = step(model, optimizer)
    losses.append(float(loss))
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses
  assert model.layers[1].kernel.dtype == jnp.bfloat16
  assert model.layers[0].kernel.dtype == jnp.float32
  assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(
      lambda p: p.dtype, nnx.state(model, nnx.Param))
