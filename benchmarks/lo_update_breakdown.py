"""Where the time of the MLP learned optimizer's update goes: its features or its network.

On one MLP pytree (``--layer-sizes``, 784-4096-2048-10 by default, ~11.6M parameters) this times, side
by side in one process (``results.time_calls``):

* optax.adam's update (the reference);
* ``MLPLOpt``'s whole update, once per ``--mlp-variants`` entry (``lo_step_cost.MLP_VARIANTS``,
  the kernels of ``lopt.mlp_kernels``);
* its per-parameter network alone (``mlp_kernels.apply_to_tensors``) on random features given as
  the update gives them, one array per feature (for the matmul kernels this includes stacking them
  into rows).

The difference ``update - network`` is the cost of everything else: the accumulators, the features
and their RMS normalisation. (With the elementwise kernel XLA fuses the network into the features'
loop, so the difference can be small or even negative: the parts are not separate there.) Rows go to
``benchmarks/RESULTS.md`` (or ``$BENCHMARK_RESULTS``).

    python benchmarks/lo_update_breakdown.py [--layer-sizes 784,4096,2048,10]
        [--mlp-variants elementwise,matmul,matmul-bfloat16,pallas] [--steps 20] [--rounds 5] [--note "…"]
"""

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lo_step_cost  # noqa: E402
import results  # noqa: E402

import lopt  # noqa: E402

SECTION = "Where the MLP LO's update time goes (benchmarks/lo_update_breakdown.py)"
HEADER = ["date", "machine", "parameters", "MLP variant", "Adam ms", "LO update ms",
          "network alone ms", "rest (features, normalisation) ms", "update / Adam", "note"]


def main(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layer-sizes", default="784,4096,2048,10")
  parser.add_argument("--mlp-variants", type=lo_step_cost.parse_mlp_variants,
                      default=lo_step_cost.default_mlp_variants())
  parser.add_argument("--steps", type=int, default=20, help="calls per timed round")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
  parser.add_argument("--note", default="", help="recorded with every row")
  args = parser.parse_args(argv)

  params = lo_step_cost.mlp_params(jax.random.PRNGKey(0),
                                   [int(s) for s in args.layer_sizes.split(",")])
  grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(p), params)
  num_params = lo_step_cost.num_parameters(params)
  updates, networks = {}, {}
  for variant in args.mlp_variants:
    lo = lopt.MLPLOpt(**lo_step_cost.MLP_VARIANTS[variant])
    theta = lo.init_meta_params(jax.random.PRNGKey(1))
    updates[variant] = (lopt.as_optax(lo, theta, lo_step_cost.NUM_STEPS), lo)
    features = list(jax.random.normal(jax.random.PRNGKey(2), (lo.num_features, num_params)))
    network = jax.jit(lambda x, theta=theta, lo=lo: lopt.mlp_kernels.apply_to_tensors(
        theta, [x], lo.mlp_kernel, lo.mlp_dtype))
    networks[variant] = (network, features)
  entries = {"adam": lo_step_cost.adam()["adam (optax, constant lr)"],
             **{f"update {v}": entry for v, entry in updates.items()}}
  seconds = lo_step_cost.seconds_per_update(entries, params, grads, args.steps, args.rounds)
  seconds.update(results.time_calls(networks, args.steps, args.rounds, feed_back=False))
  machine = results.machine()
  print(f"on {machine}: {num_params:,} parameters, Adam {seconds['adam'] * 1e3:.2f} ms")
  for variant in args.mlp_variants:
    update, network = seconds[f"update {variant}"], seconds[variant]
    row = [results.today(), machine, f"{num_params:,}", variant,
           *map(results.milliseconds, (seconds["adam"], update, network, update - network)),
           results.ratio(update / seconds["adam"]), args.note]
    print(" | ".join(row[3:]))
    results.record(SECTION, HEADER, row)


if __name__ == "__main__":
  main(sys.argv[1:])
