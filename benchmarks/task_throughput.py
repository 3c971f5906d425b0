"""Inner-training throughput of every task family with Adam, at populations 1, 8 and 32.

For each family (its default, small settings) and population ``P``, ``P`` tasks are drawn and
trained together by one ``jit``-ed ``vmap`` of a ``lax.scan`` of ``steps`` Adam steps; the program is
compiled before timing and timed as the median of ``repeats`` runs. Reports inner steps per second
summed over the population (``P * steps / seconds``) and its ratio to population 1, side by side in
one process, and appends them to ``benchmarks/RESULTS.md`` (or ``$BENCHMARK_RESULTS``).

    python benchmarks/task_throughput.py [--steps 50] [--repeats 3] [--families mlp_classifier ...]
"""

import argparse
import sys
from pathlib import Path

import jax
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

import tasks  # noqa: E402

POPULATIONS = (1, 8, 32)


def trainer(family, steps: int, learning_rate: float = 1e-3):
  """A jitted function: task keys ``[P, 2]`` -> mean loss per task over ``steps`` steps."""
  tx = optax.adam(learning_rate)

  def train(key, data):
    task_key, init_key, data_key = jax.random.split(key, 3)
    task = family.task(family.sample(task_key), data)
    params = task.init(init_key)

    def step(carry, batch_key):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(task.loss)(params, task.batch(batch_key, "train"))
      updates, opt_state = tx.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), loss

    return jax.lax.scan(step, (params, tx.init(params)), jax.random.split(data_key, steps))[1].mean()

  run = jax.jit(jax.vmap(train, in_axes=(0, None)))
  data = family.data()
  return lambda keys: run(keys, data)


def steps_per_second(family, population: int, steps: int, repeats: int) -> float:
  """Inner steps per second summed over ``population`` tasks: the median of ``repeats`` runs."""
  keys = jax.random.split(jax.random.PRNGKey(0), population)
  seconds = results.time_call(trainer(family, steps), keys, steps=1, rounds=repeats,
                              feed_back=False)
  return population * steps / seconds


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--families", nargs="+", default=sorted(tasks.FAMILIES),
                      choices=sorted(tasks.FAMILIES))
  args = parser.parse_args(argv)
  machine = results.machine()
  print(f"inner Adam steps/s (summed over the population) on {machine}")
  for name in args.families:
    family = tasks.make_family(name)
    rates = [steps_per_second(family, p, args.steps, args.repeats) for p in POPULATIONS]
    ratios = [rate / rates[0] for rate in rates]
    print(f"{name:16s} " + "  ".join(f"P={p}: {r:9.0f}/s ({x:.1f}x)"
                                       for p, r, x in zip(POPULATIONS, rates, ratios)))
    results.record(
        "Inner-training throughput per task family, Adam (benchmarks/task_throughput.py)",
        ["date", "machine", "family", "steps/s P=1", "steps/s P=8", "steps/s P=32",
         "P=8 / P=1", "P=32 / P=1"],
        [results.today(), machine, name] + [f"{r:.0f}" for r in rates]
        + [results.ratio(x) for x in ratios[1:]])


if __name__ == "__main__":
  main(sys.argv[1:])
