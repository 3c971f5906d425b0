"""Meta-training throughput of every estimator, and the memory of truncated backprop against ES.

For each estimator and population size, builds a meta-training from ``--config`` (by default the
quickstart's ``mlp`` variant: digits MLP 64-32-10 tasks at batch 128, the small_fc_lopt-size MLP
learned optimizer, unrolls of 20, i.e. the configuration of learned_optimization's small_fc_lopt
PES benchmark) with that estimator and any ``--config.*`` overrides (e.g.
``--config.lopt.mlp_kernel=xla`` to time another network kernel), compiles one outer step, runs it
once untimed and times ``--steps`` more, each fed the state the previous one returned. Reports outer
steps/s and inner steps/s (inner training steps actually run, both members of an antithetic pair
counted), and the compiled outer step's temporary memory as the unroll grows. Run it once per
device count (``XLA_FLAGS=--xla_force_host_platform_device_count=8`` for 8 CPU devices); results go
to ``benchmarks/RESULTS.md`` (or ``$BENCHMARK_RESULTS``) with the machine.

    python benchmarks/metatrain_throughput.py [--populations 8 32 128] [--steps 5]
        [--estimators pes truncated_es] [--unroll-lengths] [--note "…"] [--config.KEY=VALUE …]
"""

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

from metatrain.config import apply_overrides, build_lopt, build_task_family, load_config  # noqa: E402
from metatrain.estimators import build_estimator  # noqa: E402
from metatrain.train import build_meta_optimizer, init_state  # noqa: E402

CONFIG = f"{Path(__file__).resolve().parents[1] / 'configs' / 'quickstart.py'}:mlp"
SECTION = "Meta-training throughput by configuration (benchmarks/metatrain_throughput.py)"
HEADER = ["date", "machine", "devices", "overrides", "estimator", "population", "unroll",
          "outer steps/s", "inner steps/s", "note"]
ESTIMATORS = ("truncated_es", "pes", "tbptt", "full_es")


def compiled_outer_step(name: str, population: int, unroll_length: int, horizon: int,
                        overrides: tuple[str, ...] = ()):
  """The compiled outer step ``((state, key), data) -> (next state, next key)`` of the
  meta-training of ``CONFIG`` with ``overrides`` and estimator ``name``, its first carry and the
  task family's data."""
  config = apply_overrides(load_config(CONFIG), [*overrides,
      f"--config.estimator.name={name}", f"--config.estimator.population={population}",
      f"--config.estimator.unroll_length={unroll_length}", f"--config.estimator.horizon={horizon}"])
  family = build_task_family(config)
  estimator = build_estimator(config, family, build_lopt(config))
  meta_optimizer = build_meta_optimizer(config)
  data = family.data()
  state = init_state(config, estimator, meta_optimizer, data)

  def outer_step(carry, data):
    state, key = carry
    key, step_key = jax.random.split(key)
    grad, estimator_state, _ = estimator.grad(state["theta"], data, state["estimator_state"],
                                              step_key)
    updates, meta_opt_state = meta_optimizer.update(grad, state["meta_opt_state"], state["theta"])
    return {**state, "theta": jax.tree.map(lambda t, u: t + u, state["theta"], updates),
            "meta_opt_state": meta_opt_state, "estimator_state": estimator_state}, key

  carry = (state, jax.random.PRNGKey(1))
  return jax.jit(outer_step).lower(carry, data).compile(), carry, data


def inner_steps_per_outer_step(name: str, population: int, unroll_length: int, horizon: int):
  """Inner training steps one outer step runs, both members of an antithetic pair counted."""
  per_member = horizon if name == "full_es" else unroll_length
  return population * per_member * (1 if name == "tbptt" else 2)


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--populations", type=int, nargs="+", default=[8, 32, 128])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS))
  parser.add_argument("--unroll-lengths", type=int, nargs="*", default=[10, 20, 40, 80],
                      help="unrolls whose outer-step memory is measured (none: skip)")
  parser.add_argument("--note", default="", help="recorded with every throughput row")
  args, overrides = parser.parse_known_args(argv)
  unknown = [o for o in overrides if not o.startswith("--config.")]
  if unknown:
    parser.error(f"unrecognized arguments: {' '.join(unknown)} (config overrides are "
                 f"--config.KEY=VALUE)")
  machine, devices = results.machine(), jax.device_count()
  print(f"{machine}; {devices} device(s)")
  unroll_length, horizon = 20, 200
  for name in args.estimators:
    for population in args.populations:
      if population % devices:
        continue
      step, carry, data = compiled_outer_step(name, population, unroll_length, horizon, overrides)
      seconds = results.time_call(lambda carry: step(carry, data), carry, args.steps, rounds=1)
      inner = inner_steps_per_outer_step(name, population, unroll_length, horizon) / seconds
      print(f"{name:>12} population {population:>4}: {1 / seconds:8.2f} outer steps/s, "
            f"{inner:10.0f} inner steps/s")
      results.record(SECTION, HEADER, [
          results.today(), machine, str(devices), " ".join(overrides) or "-", name,
          str(population), str(unroll_length), f"{1 / seconds:.2f}", f"{inner:.0f}", args.note])
  for unroll in args.unroll_lengths:
    for name in ("truncated_es", "tbptt"):
      step, _, _ = compiled_outer_step(name, 8, unroll, 4 * unroll)
      memory = step.memory_analysis().temp_size_in_bytes / 2**20
      print(f"{name:>12} unroll {unroll:>3}: {memory:8.1f} MiB temporary memory")
      results.record("Outer-step memory as the unroll grows (benchmarks/metatrain_throughput.py)",
                     ["date", "machine", "estimator", "population", "unroll", "temporary MiB"],
                     [results.today(), machine, name, "8", str(unroll), f"{memory:.1f}"])


if __name__ == "__main__":
  main(sys.argv[1:])
