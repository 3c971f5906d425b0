"""Cost of one update of the exported learned optimizer against optax.adam, side by side.

Both update the same ~1M-parameter MLP pytree (784-1024-256-10) in the same process; each update is
``jit``-ed, compiled before timing, fed its own state back, and timed as the median of several
repeats of many steps. Prints the ratio and the machine and appends them to ``benchmarks/RESULTS.md``.

    python benchmarks/lo_step_cost.py [--steps 50] [--repeats 5]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

import lopt  # noqa: E402

LAYER_SIZES = (784, 1024, 256, 10)


def mlp_params(key):
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:])):
    key, sub = jax.random.split(key)
    params[f"linear_{i}"] = {"w": jax.random.normal(sub, (fan_in, fan_out)) / fan_in**0.5,
                             "b": jnp.zeros((fan_out,))}
  return params


def seconds_per_update(tx, params, grads, steps, repeats):
  """Median over ``repeats`` of the mean wall time of one jitted update over ``steps`` updates."""
  update = jax.jit(lambda g, s, p: tx.update(g, s, p))
  state = tx.init(params)
  updates, state = update(grads, state, params)
  jax.block_until_ready(updates)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      updates, state = update(grads, state, params)
    jax.block_until_ready((updates, state))
    times.append((time.perf_counter() - start) / steps)
  return statistics.median(times)


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)

  params = mlp_params(jax.random.PRNGKey(0))
  grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
  num_params = sum(p.size for p in jax.tree.leaves(params))
  lo = lopt.MLPLOpt()
  learned = lopt.as_optax(lo, lo.init_meta_params(jax.random.PRNGKey(1)), num_steps=1000)
  lo_time = seconds_per_update(learned, params, grads, args.steps, args.repeats)
  adam_time = seconds_per_update(optax.adam(1e-3), params, grads, args.steps, args.repeats)
  ratio = lo_time / adam_time
  machine = results.machine()
  print(f"{num_params:,} parameters on {machine}")
  print(f"MLP LO ({lo.hidden_size}x{lo.num_hidden_layers} hidden): {lo_time * 1e3:.2f} ms/update; "
        f"adam: {adam_time * 1e3:.2f} ms/update; ratio {ratio:.1f}x")
  results.record(
      "Learned-optimizer update vs Adam (benchmarks/lo_step_cost.py)",
      ["date", "machine", "parameters", "LO", "LO ms/update", "Adam ms/update", "LO / Adam"],
      [results.today(), machine, f"{num_params:,}", f"mlp {lo.hidden_size}x{lo.num_hidden_layers}",
       f"{lo_time * 1e3:.2f}", f"{adam_time * 1e3:.2f}", f"{ratio:.1f}x"])


if __name__ == "__main__":
  main(sys.argv[1:])
