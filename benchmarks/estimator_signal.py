"""How much of one outer step's meta-gradient is signal, for each estimator, at a fixed theta.

An estimator's outer step returns ``g_hat``, the mean of per-task estimates over the population,
and logs ``v``, the estimated variance of that mean summed over theta's coordinates
(``metatrain.aggregate``). Since E|g_hat|^2 = |g|^2 + tr Var(g_hat), the fraction of the squared
norm that is signal is estimated by

    f = mean_steps(|g_hat|^2 - v) / mean_steps(|g_hat|^2),

with its standard error over steps. For antithetic ES on a smooth loss a task's estimate
``(eps . grad) eps / sigma^2`` has E|.|^2 = (d + 2)|grad|^2 for d = dim(theta), so with a
population of P, f <= P / (P + d + 1) before any noise of the loss itself; PES sums the
perturbations of every unroll since the task's reset, which multiplies the variance by about their
number. Truncated backprop's estimates vary only with the tasks and batches (and it estimates the
truncated objective's gradient, not the whole training's).

Theta stays fixed where a new run would start it (``config.outer.init_from``, or a fresh draw); the
population's inner trainings advance as in meta-training, ``--warmup`` steps untimed and unmeasured
(so that they spread over the horizon), then ``--steps`` measured. Also reported: the cosine between
each estimator's mean estimate over the measured steps and the first estimator's. Rows go to
``benchmarks/RESULTS.md``.

    python benchmarks/estimator_signal.py --config configs/width_mixture.py:mup \\
      --config.outer.init_from=mulo-digits-mlp-h2000-late [--config.estimator.horizon=2000 ...]
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

from metatrain.config import (apply_overrides, build_lopt, build_task_family,  # noqa: E402
                              load_config, load_start_theta, parse_known_args, validate)
from metatrain.estimators import build_estimator  # noqa: E402
from metatrain.train import initial_theta  # noqa: E402


def measure(config, name: str, theta, warmup: int, steps: int) -> dict:
  """Squared norms, variances and the mean of ``steps`` estimates of estimator ``name``."""
  config = apply_overrides(config, [f"--config.estimator.name={name}"])
  family = build_task_family(config)
  estimator = build_estimator(config, family, build_lopt(config))
  data = family.data()
  state = jax.jit(estimator.init)(theta, data, jax.random.PRNGKey(config.seed))
  grad = jax.jit(lambda state, data, key: estimator.grad(theta, data, state, key))
  squares, variances, total = [], [], 0.0
  started = time.perf_counter()
  for i in range(warmup + steps):
    if i == warmup:
      started = time.perf_counter()
    g, state, metrics = grad(state, data, jax.random.PRNGKey(i))
    if i >= warmup:
      flat = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(g)])
      squares.append(float(flat @ flat))
      variances.append(float(metrics["grad_variance"]))
      total = total + flat
  squares, variances = np.array(squares), np.array(variances)
  signal = (squares - variances) / squares.mean()
  return {"seconds": (time.perf_counter() - started) / steps, "square": squares.mean(),
          "variance": variances.mean(), "fraction": signal.mean(),
          "error": signal.std(ddof=1) / np.sqrt(steps), "mean": total / steps}


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/width_mixture.py:mup")
  parser.add_argument("--estimators", default="tbptt,truncated_es,pes",
                      help="comma-separated; the first is the cosines' reference")
  parser.add_argument("--warmup", type=int, default=50)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--note", default="", help="recorded with every row")
  args, overrides = parse_known_args(parser, argv)
  config = apply_overrides(load_config(args.config), overrides)
  validate(config)
  theta = initial_theta(config, load_start_theta(config))
  machine = results.machine()
  print(machine)
  names = args.estimators.split(",")
  reference = None
  for name in names:
    m = measure(config, name, theta, args.warmup, args.steps)
    reference = m["mean"] if reference is None else reference
    cosine = m["mean"] @ reference / np.linalg.norm(m["mean"]) / np.linalg.norm(reference)
    print(f"{name:>12}: |g|^2 {m['square']:.4g}, variance {m['variance']:.4g}, signal fraction "
          f"{m['fraction']:.3f} ± {m['error']:.3f}, cosine to {names[0]} {cosine:.3f}, "
          f"{m['seconds']:.2f} s/step")
    est = config.estimator
    results.record(
        "Meta-gradient signal per estimator (benchmarks/estimator_signal.py)",
        ["date", "machine", "config", "theta", "estimator", "population", "unroll / horizon",
         "dim theta", "mean squared norm", "mean variance", "signal fraction",
         "cosine of mean to the first estimator's", "s/step", "note"],
        [results.today(), machine, f"`{args.config}` {' '.join(overrides)}",
         config.outer.init_from or "fresh", name, str(est.population),
         f"{est.unroll_length} / {est.horizon}", str(m["mean"].size), f"{m['square']:.4g}",
         f"{m['variance']:.4g}", f"{m['fraction']:.3f} ± {m['error']:.3f}",
         f"{cosine:.3f} (to {names[0]})",
         f"{m['seconds']:.2f}", args.note])


if __name__ == "__main__":
  main(sys.argv[1:])
