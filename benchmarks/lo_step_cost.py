"""Cost of every learned optimizer against optax.adam, side by side in one process, in two parts.

**(a) ``--part update``: one optimizer update.** Every learned optimizer and every baseline
updates the same MLP pytree with fixed gradients, at each size of ``--layer-sizes`` (by default
784-128-64-10, 784-1024-256-10 and 784-4096-2048-10: ~0.1M, 1M and 11.6M parameters). Reported
per optimizer and size:

* time per update and its ratios to Adam's and to Muon's (``optax.contrib.muon`` through
  ``lopt.make_baseline``);
* optimizer-state bytes relative to Adam's;
* the bytes an update must move per parameter at the least (read the parameter, the gradient and
  the state, write the state and the update) and the fraction of the memory bandwidth that this
  traffic reaches at the measured time, the bandwidth being that of a jitted ``a x + b`` over 4
  floats per parameter of the same model, measured here (at the model's size, so from the same
  level of the cache hierarchy, and writing fresh output buffers as the updates do);
* for a learned optimizer, the FLOPs per parameter of its per-parameter MLP (every parameter goes
  through the MLP) and the fraction of the machine's float32 matmul FLOP/s (a 1024^3 matmul,
  measured here) that this MLP work reaches at the measured update time.

An update is bound by whichever fraction is nearer 100 %: Adam's by memory, an LO's with a
3072-FLOP network by arithmetic.

**(b) ``--part step``: one whole training step** (forward, backward, optimizer update, apply) of
Adam, of Muon (the reference of an orthogonalising optimizer) and of every learned optimizer at
its default size, on two models from ``tasks``:

* a causal character transformer LM (``tasks`` ``char_lm`` family on ``python_docs``; ``--lm-*``
  flags). On a GPU/TPU it defaults to width 256, depth 4, 4 heads, 32 sequences of 256 tokens
  (~3.3M parameters, 8,192 tokens per step), the size of the target below; on a CPU to width 128,
  depth 2, 8 sequences of 128 tokens (~0.4M parameters, 1,024 tokens), which runs in minutes;
* an MLP classifier on digits (``tasks`` ``mlp_classifier``; ``--mlp-*`` flags; by default the
  quickstart's meta-training task, one hidden layer of 32 and batches of 128).

The batch is drawn once and fed to every step; μLOs get the task's parameter roles. Reported per
model and optimizer: ms per step and its ratio to Adam's step. The target: on the transformer,
the ``mlp`` LO (the small_fc_lopt-size per-parameter MLP) takes at most ``TARGET`` = 1.3x Adam's
step time; whether each LO meets it is printed.

Every learned optimizer is timed once per entry of ``--mlp-variants`` (``MLP_VARIANTS``, the ways
``lopt.mlp_kernels`` runs the per-parameter network: elementwise and fused by XLA, XLA matmuls in
float32 or bfloat16, or the fused Pallas kernel of ``lopt.fused_mlp``; by default all four on an
accelerator, the first two on a CPU, where Pallas only interprets), or ``auto``, what a user gets
by default (on a CPU elementwise for large tensors and matmuls for the rest, which compiles in a
fraction of the forced elementwise network's time on models of many small tensors). A variant an
architecture cannot run (the Pallas kernel with a hidden size under 16) is left out.

Each update or step is ``jit``-ed, compiled before timing and fed its own state back; the timed
rounds are interleaved (every optimizer once per round, ``results.time_calls``) so that load on a
shared machine hits all of them alike, and each time is the median over ``--rounds`` rounds of the
mean of ``--steps`` calls. Rows are appended to ``benchmarks/RESULTS.md`` (or
``$BENCHMARK_RESULTS``, see ``results.py``), one section per part.

    python benchmarks/lo_step_cost.py [--part update|step|all] [--steps 20] [--rounds 7]
        [--layer-sizes "784,128,64,10;784,1024,256,10"]
        [--lm-width W] [--lm-depth D] [--lm-heads H] [--lm-sequence-length T] [--lm-batch-size B]
        [--mlp-hidden-sizes 32] [--mlp-batch-size 128] [--lopts mlp,mu_mlp,…]
        [--mlp-variants elementwise,matmul,matmul-bfloat16,pallas]
        [--note "…"]
"""

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

import lopt  # noqa: E402
import tasks  # noqa: E402

UPDATE_SECTION = ("Optimizer update cost vs Adam and Muon, every LO, network kernel and baseline "
                  "(benchmarks/lo_step_cost.py)")
UPDATE_HEADER = ["date", "machine", "parameters", "optimizer", "ms/update", "time / Adam",
                 "time / Muon", "state bytes / Adam", "min bytes moved/param",
                 "bytes/s / memory bandwidth", "LO MLP FLOPs/param",
                 "LO MLP FLOP/s / matmul FLOP/s", "note"]
MUON = "muon (baseline)"
STEP_SECTION = ("Whole training step (forward, backward, update, apply) vs Adam, every LO "
                "(benchmarks/lo_step_cost.py)")
STEP_HEADER = ["date", "machine", "model", "parameters", "tokens or examples / step", "optimizer",
               "ms/step", "step / Adam step", "note"]
# The most an LO's transformer training step may cost, as a multiple of Adam's (the target
# for the "mlp" LO).
TARGET = 1.3
# Transformer LM sizes by default: the target's size on an accelerator, a smaller one on a CPU.
LM_DEFAULTS = {"accelerator": dict(width=256, depth=4, heads=4, sequence_length=256, batch_size=32),
               "cpu": dict(width=128, depth=2, heads=4, sequence_length=128, batch_size=8)}
# Ways to run an LO's per-parameter network (``lopt.mlp_kernels``): the architecture's settings,
# and a label.
MLP_VARIANTS = {"auto": {"mlp_kernel": "auto"},
                "elementwise": {"mlp_kernel": "elementwise"},
                "matmul": {"mlp_kernel": "xla"},
                "matmul-bfloat16": {"mlp_kernel": "xla", "mlp_dtype": "bfloat16"},
                "pallas": {"mlp_kernel": "pallas"}}
MLP_LABELS = {"auto": "default (auto) MLP kernel", "elementwise": "elementwise MLP",
              "matmul": "matmul MLP", "matmul-bfloat16": "bfloat16 matmul MLP",
              "pallas": "fused Pallas MLP"}
# The variants timed by default, per backend: on a CPU, Pallas only interprets and bfloat16 has no
# fast path.
DEFAULT_MLP_VARIANTS = {"cpu": ("elementwise", "matmul"),
                        "accelerator": ("elementwise", "matmul", "matmul-bfloat16", "pallas")}
DEFAULT_LAYER_SIZES = "784,128,64,10;784,1024,256,10;784,4096,2048,10"
NUM_STEPS = 1000  # The training length the optimizers plan for (schedules, LO progress features).


def mlp_params(key, layer_sizes):
  """Parameters ``{"linear_i": {"w", "b"}}`` of an MLP with ``layer_sizes``, fan-in scaled."""
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
    key, sub = jax.random.split(key)
    params[f"linear_{i}"] = {"w": jax.random.normal(sub, (fan_in, fan_out)) / fan_in**0.5,
                             "b": jnp.zeros((fan_out,))}
  return params


def num_parameters(params) -> int:
  """The number of scalars in ``params``."""
  return sum(p.size for p in jax.tree.leaves(params))


def adam():
  """``{label: (optax.adam with a constant learning rate 1e-3, None)}``, the reference."""
  return {"adam (optax, constant lr)": (optax.adam(1e-3), None)}


def baselines():
  """``{label: (transformation, None)}`` of every baseline, learning rate 1e-3, warmup + cosine."""
  return {f"{name} (baseline)": (lopt.make_baseline(name, 1e-3, NUM_STEPS,
                                                     1e-2 if name == "adamw" else 0.0), None)
          for name in lopt.BASELINES}


def learned_optimizers(names, mlp_variants, roles=None):
  """``{label: (transformation, learned optimizer)}`` of the learned optimizers ``names`` at their
  default size and ``theta`` from ``init_meta_params``, once per ``MLP_VARIANTS`` entry of
  ``mlp_variants`` that each can run; ``roles`` go to the μP-aware ones."""
  entries = {}
  for name in names:
    for variant in mlp_variants:
      try:
        lo = lopt.ARCHITECTURES[name](**MLP_VARIANTS[variant])
      except ValueError:
        continue  # This architecture cannot run this variant (e.g. too small for the kernel).
      theta = lo.init_meta_params(jax.random.PRNGKey(1))
      label = (f"{name} LO (hidden {lo.hidden_size}x{lo.num_hidden_layers}, "
               f"{MLP_LABELS[variant]})")
      entries[label] = (lopt.as_optax(lo, theta, NUM_STEPS, roles), lo)
  return entries


def state_bytes(tx, params) -> int:
  """Bytes of the state of ``tx`` for ``params``."""
  state = jax.eval_shape(tx.init, params)
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


def matmul_flops_per_second(size=1024, repeats=20) -> float:
  """Measured float32 FLOP/s of a ``size``^3 matmul (median of ``repeats``)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
  matmul = jax.jit(lambda x, a: x @ a)
  seconds = results.time_call(functools.partial(matmul, a=a), a, steps=1, rounds=repeats,
                              feed_back=False)
  return 2 * size**3 / seconds


def memory_bytes_per_second(num_floats: int, repeats=20) -> float:
  """Measured memory bandwidth: bytes read and written per second by a jitted ``a x + b`` over
  ``num_floats`` float32 (median of ``repeats``)."""
  x = jnp.ones((num_floats,), jnp.float32)
  stream = jax.jit(lambda x: 1.0001 * x + 1e-4)
  seconds = results.time_call(stream, x, steps=1, rounds=repeats, feed_back=False)
  return 2 * 4 * num_floats / seconds


def min_bytes_moved(tx, params) -> int:
  """The least traffic of one update: read the parameters, gradients and state, write the state
  and the updates."""
  param_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(params))
  return 3 * param_bytes + 2 * state_bytes(tx, params)


def seconds_per_update(entries, params, grads, steps, rounds):
  """``{label: seconds}``: per optimizer, the median over interleaved rounds of the mean time of one
  jitted update over ``steps`` updates, each fed the state the previous one returned."""
  calls = {}
  for label, (tx, _) in entries.items():
    # The carry is (updates, state): the updates are an output, so their work is not optimised away.
    update = jax.jit(lambda carry, grads, params, tx=tx: tx.update(grads, carry[1], params))
    calls[label] = (functools.partial(update, grads=grads, params=params), (grads, tx.init(params)))
  return results.time_calls(calls, steps, rounds)


def train_step(task, tx):
  """``(params, opt_state, loss), batch -> (params, opt_state, loss)``: one jitted training step
  of ``task`` with ``tx`` (the loss reaches ``tx`` through ``value=``)."""

  def step(carry, batch):
    params, opt_state, _ = carry
    loss, grads = jax.value_and_grad(task.loss)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step)


def seconds_per_step(task, entries, params, batch, steps, rounds):
  """``{label: seconds}``: per optimizer, the median over interleaved rounds of the mean time of
  one jitted training step of ``task`` from ``params`` on ``batch``, over ``steps`` steps."""
  calls = {label: (functools.partial(train_step(task, tx), batch=batch),
                   (params, tx.init(params), jnp.zeros(())))
           for label, (tx, _) in entries.items()}
  return results.time_calls(calls, steps, rounds)


def lm_task(args):
  """The transformer LM task of the ``--lm-*`` flags, its description and tokens per step."""
  family = tasks.CharLMFamily(width=args.lm_width, depth=args.lm_depth, num_heads=args.lm_heads,
                              sequence_length=args.lm_sequence_length,
                              batch_size=args.lm_batch_size)
  description = (f"char_lm transformer, width {family.width}, depth {family.depth}, "
                 f"{family.num_heads} heads")
  tokens = (f"{family.batch_size * family.sequence_length:,} tokens "
            f"({family.batch_size}x{family.sequence_length})")
  return family.task(family.sample(jax.random.PRNGKey(0)), family.data()), description, tokens


def mlp_task(args):
  """The digits MLP classifier task of the ``--mlp-*`` flags, its description and examples per
  step."""
  hidden_sizes = tuple(int(s) for s in args.mlp_hidden_sizes.split(","))
  family = tasks.MLPClassifierFamily(hidden_sizes=hidden_sizes, batch_size=args.mlp_batch_size)
  description = f"mlp_classifier on {family.dataset}, hidden {','.join(map(str, hidden_sizes))}"
  return (family.task(family.sample(jax.random.PRNGKey(0)), family.data()), description,
          f"{family.batch_size:,} examples")


def update_part(args, machine):
  """Part (a): times one update of every optimizer on an MLP pytree of each ``--layer-sizes``,
  prints and records rows."""
  matmul_flops = matmul_flops_per_second()
  print(f"(a) matmul {matmul_flops / 1e9:.1f} GFLOP/s")
  for layer_sizes in args.layer_sizes.split(";"):
    params = mlp_params(jax.random.PRNGKey(0), [int(s) for s in layer_sizes.split(",")])
    grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(p), params)
    num_params = num_parameters(params)
    bandwidth = memory_bytes_per_second(4 * num_params)
    entries = {**adam(), **baselines(), **learned_optimizers(args.lopts, args.mlp_variants)}
    seconds = seconds_per_update(entries, params, grads, args.steps, args.rounds)
    adam_label = next(iter(entries))
    adam_bytes = state_bytes(entries[adam_label][0], params)
    print(f"(a) one update, {num_params:,} parameters, memory {bandwidth / 1e9:.1f} GB/s")
    for label, (tx, lo) in entries.items():
      traffic = min_bytes_moved(tx, params)
      flops = f"{lo.flops_per_parameter:,}" if lo else "-"
      fraction = (f"{lo.flops_per_parameter * num_params / seconds[label] / matmul_flops:.1%}"
                  if lo else "-")
      row = [results.today(), machine, f"{num_params:,}", label,
             results.milliseconds(seconds[label]),
             results.ratio(seconds[label] / seconds[adam_label]),
             results.ratio(seconds[label] / seconds[MUON]),
             f"{state_bytes(tx, params) / adam_bytes:.3g}", f"{traffic / num_params:.3g}",
             f"{traffic / seconds[label] / bandwidth:.1%}", flops, fraction, args.note]
      print(" | ".join(row[3:]))
      results.record(UPDATE_SECTION, UPDATE_HEADER, row)


def step_part(args, machine):
  """Part (b): times one training step of Adam, Muon and every LO on the transformer LM and the MLP
  classifier, prints and records rows, and prints which LOs meet ``TARGET`` on the LM."""
  for make_task, check_target in ((lm_task, True), (mlp_task, False)):
    task, description, per_step = make_task(args)
    init_key, batch_key = jax.random.split(jax.random.PRNGKey(0))
    params, batch = task.init(init_key), task.batch(batch_key, "train")
    entries = {**adam(), MUON: baselines()[MUON],
               **learned_optimizers(args.lopts, args.mlp_variants, task.roles(params))}
    seconds = seconds_per_step(task, entries, params, batch, args.steps, args.rounds)
    adam_seconds, parameters = seconds[next(iter(entries))], f"{num_parameters(params):,}"
    print(f"(b) one training step: {description}, {parameters} parameters, {per_step} per step")
    for label, (_, lo) in entries.items():
      ratio = seconds[label] / adam_seconds
      row = [results.today(), machine, description, parameters, per_step, label,
             results.milliseconds(seconds[label]), results.ratio(ratio), args.note]
      verdict = f" | target <= {TARGET}x Adam: {'met' if ratio <= TARGET else 'missed'}"
      print(" | ".join(row[5:8]) + (verdict if lo and check_target else ""))
      results.record(STEP_SECTION, STEP_HEADER, row)


def comma_separated(kind: str, valid) -> Callable[[str], tuple[str, ...]]:
  """An argparse ``type``: comma-separated names, each one of ``valid``; an unknown one is an error
  naming it, its ``kind`` and the valid names."""

  def parse(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in valid]
    if unknown:
      raise argparse.ArgumentTypeError(
          f"unknown {kind} {', '.join(unknown)}; valid: {', '.join(valid)}")
    return names

  return parse


parse_mlp_variants = comma_separated("MLP variant(s)", MLP_VARIANTS)


def default_mlp_variants() -> str:
  """``DEFAULT_MLP_VARIANTS`` of this backend."""
  backend = "cpu" if jax.default_backend() == "cpu" else "accelerator"
  return ",".join(DEFAULT_MLP_VARIANTS[backend])


def parse_args(argv):
  """The command line; ``--lm-*`` flags left out take ``LM_DEFAULTS`` for this backend."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--part", choices=("update", "step", "all"), default="all",
                      help="(a) one optimizer update, (b) one whole training step, or both")
  parser.add_argument("--steps", type=int, default=20, help="calls per timed round")
  parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
  parser.add_argument("--layer-sizes", default=DEFAULT_LAYER_SIZES,
                      help="(a) MLP layer sizes, one model per ';'-separated entry "
                           "(default: %(default)s, ~0.1M, 1M and 11.6M parameters)")
  backend = "cpu" if jax.default_backend() == "cpu" else "accelerator"
  for name, value in LM_DEFAULTS[backend].items():
    parser.add_argument(f"--lm-{name.replace('_', '-')}", type=int, default=value,
                        help=f"(b) transformer LM {name.replace('_', ' ')} (default on {backend}: "
                             f"%(default)s)")
  parser.add_argument("--mlp-hidden-sizes", default="32",
                      help="(b) MLP classifier hidden layer sizes, comma-separated")
  parser.add_argument("--mlp-batch-size", type=int, default=128,
                      help="(b) MLP classifier examples per step")
  parser.add_argument("--lopts", default=",".join(lopt.ARCHITECTURES),
                      type=comma_separated("learned optimizer(s)", lopt.ARCHITECTURES),
                      help="learned optimizers to time, comma-separated (default: all)")
  parser.add_argument("--mlp-variants", type=parse_mlp_variants,
                      default=default_mlp_variants(),
                      help=f"ways to run the LO networks, comma-separated (valid: "
                           f"{','.join(MLP_VARIANTS)}; default on {backend}: %(default)s)")
  parser.add_argument("--note", default="", help="recorded with every row, e.g. the machine's load")
  return parser.parse_args(argv)


def main(argv):
  """Runs the parts of the benchmark that ``--part`` picks."""
  args = parse_args(argv)
  machine = results.machine()
  print(f"on {machine}")
  if args.part in ("update", "all"):
    update_part(args, machine)
  if args.part in ("step", "all"):
    step_part(args, machine)


if __name__ == "__main__":
  main(sys.argv[1:])
