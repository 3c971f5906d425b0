"""Cost of one update of every learned optimizer and every baseline against optax.adam, side by side.

All optimizers update the same MLP pytree (784-1024-256-10 by default, ~1M parameters) in one process.
Each update is ``jit``-ed, compiled before timing and fed its own state back; the timed rounds are
interleaved (every optimizer once per round) so that load on a shared machine hits all of them alike,
and each time is the median over rounds of the mean of many steps. Reported per optimizer:

* time per update and its ratio to Adam's;
* optimizer-state bytes relative to Adam's;
* for a learned optimizer, the FLOPs per parameter of its per-parameter MLP (the update's lower bound:
  every parameter goes through the MLP) and the fraction of the machine's float32 matmul FLOP/s (a
  1024^3 matmul, measured here) that this MLP work reaches at the measured update time.

Rows are appended to ``benchmarks/RESULTS.md``.

    python benchmarks/lo_step_cost.py [--steps 20] [--rounds 7] [--layer-sizes 784,1024,256,10]
                                      [--note "…"]
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

SECTION = "Optimizer update cost vs Adam, every LO and baseline (benchmarks/lo_step_cost.py)"
HEADER = ["date", "machine", "parameters", "optimizer", "ms/update", "time / Adam",
          "state bytes / Adam", "LO MLP FLOPs/param", "LO MLP FLOP/s / matmul FLOP/s", "note"]


def mlp_params(key, layer_sizes):
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
    key, sub = jax.random.split(key)
    params[f"linear_{i}"] = {"w": jax.random.normal(sub, (fan_in, fan_out)) / fan_in**0.5,
                             "b": jnp.zeros((fan_out,))}
  return params


def optimizers(num_steps):
  """``{label: (optax transformation, learned optimizer or None)}``: Adam first, then every baseline
  (learning rate 1e-3, warmup + cosine) and every learned optimizer at its default size."""
  entries = {"adam (optax, constant lr)": (optax.adam(1e-3), None)}
  for name in lopt.BASELINES:
    weight_decay = 1e-2 if name == "adamw" else 0.0
    entries[f"{name} (baseline)"] = (lopt.make_baseline(name, 1e-3, num_steps, weight_decay), None)
  for name, architecture in lopt.ARCHITECTURES.items():
    lo = architecture()
    theta = lo.init_meta_params(jax.random.PRNGKey(1))
    entries[f"{name} LO (hidden {lo.hidden_size}x{lo.num_hidden_layers})"] = (
        lopt.as_optax(lo, theta, num_steps), lo)
  return entries


def state_bytes(tx, params) -> int:
  state = jax.eval_shape(tx.init, params)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


def matmul_flops_per_second(size=1024, repeats=20) -> float:
  """Measured float32 FLOP/s of a ``size``^3 matmul (median of ``repeats``)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
  matmul = jax.jit(lambda x: x @ a)
  jax.block_until_ready(matmul(a))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a))
    times.append(time.perf_counter() - start)
  return 2 * size**3 / statistics.median(times)


def seconds_per_update(entries, params, grads, steps, rounds):
  """``{label: seconds}``: per optimizer, the median over interleaved rounds of the mean time of one
  jitted update over ``steps`` updates."""
  runners = {}
  for label, (tx, _) in entries.items():
    update = jax.jit(lambda g, s, p, tx=tx: tx.update(g, s, p))
    state = tx.init(params)
    jax.block_until_ready(update(grads, state, params))  # Compile.
    runners[label] = (update, state)
  times = {label: [] for label in entries}
  for _ in range(rounds):
    for label, (update, state) in runners.items():
      start = time.perf_counter()
      for _ in range(steps):
        updates, state = update(grads, state, params)
      jax.block_until_ready((updates, state))
      times[label].append((time.perf_counter() - start) / steps)
      runners[label] = (update, state)
  return {label: statistics.median(t) for label, t in times.items()}


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="updates per timed round")
  parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
  parser.add_argument("--layer-sizes", default="784,1024,256,10",
                      help="MLP layer sizes, e.g. 784,4096,2048,10 for ~11M parameters")
  parser.add_argument("--note", default="", help="recorded with every row, e.g. the machine's load")
  args = parser.parse_args(argv)

  params = mlp_params(jax.random.PRNGKey(0), [int(s) for s in args.layer_sizes.split(",")])
  grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
  num_params = sum(p.size for p in jax.tree.leaves(params))
  entries = optimizers(num_steps=1000)
  seconds = seconds_per_update(entries, params, grads, args.steps, args.rounds)
  matmul_flops = matmul_flops_per_second()
  adam_label = next(iter(entries))
  adam_seconds, adam_bytes = seconds[adam_label], state_bytes(entries[adam_label][0], params)
  machine = results.machine()
  print(f"{num_params:,} parameters on {machine}; matmul {matmul_flops / 1e9:.1f} GFLOP/s")
  for label, (tx, lo) in entries.items():
    flops = f"{lo.flops_per_parameter:,}" if lo else "-"
    fraction = (f"{lo.flops_per_parameter * num_params / seconds[label] / matmul_flops:.1%}"
                if lo else "-")
    row = [results.today(), machine, f"{num_params:,}", label, f"{seconds[label] * 1e3:.2f}",
           f"{seconds[label] / adam_seconds:.1f}x",
           f"{state_bytes(tx, params) / adam_bytes:.3g}", flops, fraction, args.note]
    print(" | ".join(row[3:]))
    results.record(SECTION, HEADER, row)


if __name__ == "__main__":
  main(sys.argv[1:])
