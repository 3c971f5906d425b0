"""The optax export under pmap, shard_map and sharded jit gives the single-device updates.

JAX fixes its device count when it starts, so the checks run in a fresh process with 4 host devices.
"""

import os
import subprocess
import sys

from conftest import REPO

CHECKS = r"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import lopt

assert jax.device_count() == 4, jax.devices()
devices = np.array(jax.devices())
params = {"hidden": {"w": jax.random.normal(jax.random.PRNGKey(0), (8, 16)),
                     "b": jnp.zeros((16,))},
          "out": {"w": jax.random.normal(jax.random.PRNGKey(1), (16, 4)) / 4}}
grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1.0)) + 0.1, params) for i in range(3)]


def close(got, expected):
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got,
               expected)


for name in ("mlp", "adafac_mlp", "mu_mlp", "velo_lstm"):
  lo = lopt.make(name)
  tx = lopt.as_optax(lo, lo.init_meta_params(jax.random.PRNGKey(2)), num_steps=10)
  update = lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.0))

  def single_device(params):
    state = tx.init(params)
    for g in grads:
      updates, state = jax.jit(update)(g, state, params)
      params = optax.apply_updates(params, updates)
    return params

  expected = single_device(params)

  # pmap: data parallel, params and state replicated, each device holds a quarter of the gradient.
  replicate = lambda tree: jax.tree.map(lambda x: jnp.stack([x] * 4), tree)
  @functools.partial(jax.pmap, axis_name="data")
  def pmapped_step(g_part, state, params):
    updates, state = update(jax.lax.psum(g_part, "data"), state, params)
    return optax.apply_updates(params, updates), state
  p, s = replicate(params), jax.pmap(tx.init)(replicate(params))
  for g in grads:
    p, s = pmapped_step(replicate(jax.tree.map(lambda x: x / 4, g)), s, p)
  close(jax.tree.map(lambda x: x[0], p), expected)

  # shard_map: the same data-parallel step over a 4-device mesh.
  mesh = Mesh(devices, ("data",))
  @jax.jit
  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P("data"), P(), P()),
                     out_specs=(P(), P()))
  def sharded_step(g_parts, state, params):
    g = jax.tree.map(lambda x: jax.lax.psum(x[0], "data"), g_parts)
    updates, state = update(g, state, params)
    return optax.apply_updates(params, updates), state
  p, s = params, tx.init(params)
  for g in grads:
    p, s = sharded_step(replicate(jax.tree.map(lambda x: x / 4, g)), s, p)
  close(p, expected)

  # jit with the parameters (and so the state) sharded over the mesh: model parallel.
  shard = lambda tree: jax.tree.map(
      lambda x: jax.device_put(x, NamedSharding(mesh, P(*(["data"] if x.ndim else [])))), tree)
  p, s = shard(params), tx.init(shard(params))
  for g in grads:
    updates, s = jax.jit(update)(shard(g), s, p)
    p = optax.apply_updates(p, updates)
  close(p, expected)
  print(name, "ok")
"""


def test_export_gives_single_device_updates_under_pmap_shard_map_and_sharded_jit():
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  result = subprocess.run([sys.executable, "-c", CHECKS], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  assert result.stdout.split() == ["mlp", "ok", "adafac_mlp", "ok", "mu_mlp", "ok",
                                   "velo_lstm", "ok"]
