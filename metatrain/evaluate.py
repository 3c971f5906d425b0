"""Evaluation: a learned optimizer against hand-designed baselines tuned per task, on task suites.

    python -m metatrain.evaluate --optimizer runs/quickstart/optimizer --suite width
    python -m metatrain.evaluate --config configs/eval_quickstart.py --config.seeds=5

Read top to bottom. ``train_population`` trains one task per key with any optax transformation in
one ``vmap``-ed, ``jit``-ed program and returns the loss curves and the final metrics on every
split; ``run_grid`` adds a ``vmap`` axis over a hyperparameter. ``tune_baseline`` runs a baseline of
``lopt`` at every point of its grid on the same tasks and keeps the point with the lowest mean (over
tasks) final training loss; a diverged run (non-finite loss) never wins. ``evaluate_task`` runs one
optimizer on one task of a suite (``metatrain.suites``): the learned optimizer is loaded with its
``num_steps`` set to the task's step budget, and every optimizer trains the same held-out tasks
(``eval_keys``: same task draws, initialisations and batches). ``run`` evaluates every (task,
optimizer) pair of a suite into a workdir, writing each pair's result atomically as JSON so that a
killed evaluation started again with the same settings skips the finished pairs, then writes the
report (``metatrain.eval_report``). ``skip_tasks`` leaves some of the suite's tasks out of one
evaluation (a 25x horizon on a CPU, say); started again without them, it adds them to the same
workdir. ``main`` is the command line.

A tuned baseline does not depend on the learned optimizer, so evaluations of several learned
optimizers on the same tasks can share them: with ``baseline_cache`` set to a directory, each tuned
baseline is also stored there under a name that hashes everything that determines it
(``baseline_key``: the task's family, settings and step budget, the baseline and its grid, the
held-out seeds, the schedule, the versions of this library and of JAX), and an evaluation that
needs the same one copies it instead of tuning it again.

Workdir: ``evaluation.json`` (the settings, the optimizer's card and the suite's tasks; another
evaluation's workdir is refused unless ``--overwrite``), ``runs/<task>/<optimizer>.json``, and the
report files of ``metatrain.eval_report``.
"""

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict
from tqdm import tqdm

import lopt
from lopt.passport import EnvelopeWarning
from metatrain import eval_report, suites
from metatrain.config import (ConfigError, apply_overrides, load_config, parse_known_args,
                              resolve_optimizer)
from metatrain.unroll import train_one
from tasks import TaskFamily, family_roles

EVAL_SEED_OFFSET = 1_000_003  # Evaluation tasks use seeds far from the meta-training seeds.
LEARNED = "learned"  # The learned optimizer's name among the optimizers of an evaluation.
# The learned optimizer with its learning rate and weight decay tuned on the reference's grid, for
# optimizers that take them from outside (``takes_learning_rate``; config.tune_learned).
LEARNED_TUNED = "learned_tuned"
REFERENCE = "adamw"  # The tuned baseline the learned optimizer is scored against.
SCORED_AGAINST = (REFERENCE, "muon")  # Reports also score it against these, where they ran.
CONFIG_FILE = "evaluation.json"
RUNS_DIR = "runs"
MAX_CURVE_POINTS = 250  # Stored loss curves average the per-step losses over at most 250 windows.


def eval_keys(seed: int, num_seeds: int) -> jax.Array:
  """Keys of the held-out evaluation tasks (never used in meta-training)."""
  return jax.random.split(jax.random.PRNGKey(EVAL_SEED_OFFSET + seed), num_seeds)


def train_population(family: TaskFamily, tx: optax.GradientTransformationExtraArgs,
                     keys: jax.Array, num_steps: int) -> dict[str, np.ndarray]:
  """Trains one task per key for ``num_steps`` steps; arrays have the keys as leading axis."""
  run = jax.jit(jax.vmap(lambda k, data: train_one(family, data, tx, k, num_steps),
                         in_axes=(0, None)))
  return jax.tree.map(np.asarray, run(keys, family.data()))


def run_grid(family: TaskFamily, make_tx: Callable[[jax.Array], optax.GradientTransformation],
             values, keys: jax.Array, num_steps: int) -> dict[str, np.ndarray]:
  """Trains every task with ``make_tx(v)`` for every ``v`` of ``values`` in one program; arrays
  have the values, then the keys, as leading axes."""
  run_at = lambda v, data: jax.vmap(
      lambda k: train_one(family, data, make_tx(v), k, num_steps))(keys)
  run = jax.jit(jax.vmap(run_at, in_axes=(0, None)))
  return jax.tree.map(np.asarray, run(jnp.asarray(values), family.data()))


def _select(final_train_losses: np.ndarray) -> tuple[list[float], int]:
  """Mean over tasks of each grid point's final training loss (inf if any diverged) and the best."""
  score = np.nan_to_num(final_train_losses.mean(axis=1), nan=np.inf)
  return score.tolist(), int(np.argmin(score))


def tune_baseline(family: TaskFamily, keys: jax.Array, num_steps: int, name: str,
                  points: list[dict[str, float]], warmup_fraction: float = 0.05,
                  schedule: str = "warmup_cosine", extensions: int = 0) -> dict[str, Any]:
  """Runs the baseline ``name`` at every point of ``points`` (keyword arguments of
  ``lopt.make_baseline``, as ``lopt.search_space`` gives them) on every task; see ``tune``."""
  build = lambda rest: lopt.make_baseline(name, 1.0, num_steps, warmup_fraction=warmup_fraction,
                                          schedule=schedule, **rest)
  return tune(family, keys, num_steps, points, build, extensions)


def tune(family: TaskFamily, keys: jax.Array, num_steps: int, points: list[dict[str, float]],
         build: Callable[..., optax.GradientTransformation], extensions: int = 0
         ) -> dict[str, Any]:
  """Runs an optimizer at every point of ``points`` (a ``learning_rate`` and other keyword
  arguments) on every task; ``build(rest)`` gives it at learning rate 1 with the other arguments
  ``rest``.

  Returns ``grid`` (each point with its ``mean_final_train_loss``), the ``best`` point and its
  ``runs``. Points that differ only in learning rate share one program with the learning rate as a
  ``vmap`` axis: the optimizer is built at learning rate 1 and its update multiplied by the
  learning rate, the same update since its schedule (and decoupled weight decay, which follows
  it) is linear in the peak value.

  A best learning rate at either end of three or more means the optimizer may do better past it:
  up to ``extensions`` times, the grid then gets the next learning rate past that end (the end
  times the ratio of the end to its neighbour), with every value of the other hyperparameters.
  """
  groups: dict[tuple, list[float]] = {}
  for point in points:
    rest = tuple(sorted((k, v) for k, v in point.items() if k != "learning_rate"))
    groups.setdefault(rest, []).append(point["learning_rate"])
  grid, runs = [], []

  def run_points(rest: tuple, learning_rates: list[float]) -> None:
    base = build(dict(rest))
    group = run_grid(family, lambda lr: optax.chain(base, optax.scale(lr)), learning_rates, keys,
                     num_steps)
    for i, learning_rate in enumerate(learning_rates):
      grid.append({"learning_rate": learning_rate, **dict(rest)})
      runs.append(jax.tree.map(lambda a: a[i], group))

  for rest, learning_rates in groups.items():
    run_points(rest, learning_rates)
  score, best = _select(np.stack([r["train_loss"] for r in runs]))
  for _ in range(extensions):
    beyond = _past_the_edge(sorted({p["learning_rate"] for p in grid}),
                            grid[best]["learning_rate"])
    if beyond is None:
      break
    for rest in groups:
      run_points(rest, [beyond])
    score, best = _select(np.stack([r["train_loss"] for r in runs]))
  for point, loss in zip(grid, score):
    point["mean_final_train_loss"] = loss if np.isfinite(loss) else None
  hyperparameters = {k: v for k, v in grid[best].items() if k != "mean_final_train_loss"}
  return {"grid": grid, "best": hyperparameters, "runs": runs[best]}


def _past_the_edge(learning_rates: list[float], best: float) -> float | None:
  """The learning rate one step past the end of the sorted ``learning_rates`` that ``best`` is
  at, or None if it is not ``eval_report.at_grid_end``."""
  if not eval_report.at_grid_end(learning_rates, best):
    return None
  end, neighbour = learning_rates[:2] if best == learning_rates[0] else learning_rates[:-3:-1]
  return end * end / neighbour


def default_config() -> ConfigDict:
  """The evaluation settings; a config file (``configs/eval_*.py``) starts from these."""
  config = ConfigDict()
  config.optimizer = ""  # A directory written by lopt.save, or the name of a shipped optimizer.
  config.suite = "in-distribution"  # One of metatrain.suites.SUITES.
  config.seeds = 3  # Held-out tasks per task of the suite (eval_keys(seed, seeds)).
  config.seed = 0
  config.steps_multiplier = 1.0  # Multiplies every task's step budget (e.g. 0.1 for a quick look).
  # The baselines, each tuned per task on its grid: config.grids.<name> when full_grids is false and
  # the grid is given there, lopt.search_space(<name>) otherwise. adamw is the reference.
  config.baselines = ("adamw", "muon", "adam", "lion", "sgd")
  config.full_grids = False
  # The coarse grids of lopt.baselines (Muon's updates have AdamW's RMS, so it shares AdamW's).
  config.grids = ConfigDict({name: ConfigDict(lopt.grid(name, coarse=True))
                             for name in ("adamw", "muon", "adam", "lion", "sgd")})
  # Every baseline's schedule (lopt.learning_rate_schedule): linear warmup, then cosine decay to 0.
  config.warmup_fraction = 0.05
  config.schedule = "warmup_cosine"
  # A best learning rate at an end of its grid extends the grid past that end, up to this many
  # times (see tune_baseline; 0: the grid as given).
  config.grid_extensions = 2
  # For a learned optimizer that takes its learning rate and weight decay from outside (ortho_mlp),
  # also run it tuned on the reference's grid ("learned_tuned"), as well as at its card's defaults.
  config.tune_learned = True
  # A directory where tuned baselines are kept for other evaluations on the same tasks ("": none).
  config.baseline_cache = ""
  # Names of the suite's tasks to leave out this time (listed in the report with the reason); the
  # workdir keeps the other tasks' runs, so that a later evaluation without them adds them.
  config.skip_tasks = ()
  return config


def grid_points(config: ConfigDict, name: str) -> list[dict[str, float]]:
  """The hyperparameters ``name`` is tuned over; see ``default_config``."""
  if config.full_grids or name not in config.grids:
    return lopt.search_space(name)
  grid = config.grids[name]
  unknown = sorted(set(grid) - {"learning_rates", "weight_decays"})
  if unknown:
    raise ConfigError(f"config.grids.{name} has unknown key(s) {unknown}; valid keys: "
                      "['learning_rates', 'weight_decays']")
  decays = grid.get("weight_decays", ())
  if not decays:
    return [{"learning_rate": lr} for lr in grid.learning_rates]
  return [{"learning_rate": lr, "weight_decay": wd} for lr in grid.learning_rates for wd in decays]


def validate(config: ConfigDict) -> None:
  """Checks the settings that do not need the optimizer; raises ``ConfigError`` on a problem."""
  if config.suite not in suites.SUITES:
    raise ConfigError(f"unknown suite '{config.suite}'; valid suites: {list(suites.SUITES)}")
  if config.seeds < 1:
    raise ConfigError(f"config.seeds must be >= 1, got {config.seeds}")
  if config.grid_extensions < 0:
    raise ConfigError(f"config.grid_extensions must be >= 0, got {config.grid_extensions}")
  if not config.steps_multiplier > 0:
    raise ConfigError(f"config.steps_multiplier must be > 0, got {config.steps_multiplier}")
  if REFERENCE not in config.baselines:
    raise ConfigError(f"config.baselines must include '{REFERENCE}', the reference of the score; "
                      f"got {list(config.baselines)}")
  for name in config.baselines:
    if name not in lopt.BASELINES:
      raise ConfigError(f"unknown baseline '{name}' in config.baselines; valid choices: "
                        f"{sorted(lopt.BASELINES)}")
    points = grid_points(config, name)
    if not points:
      raise ConfigError(f"the grid of '{name}' is empty; give config.grids.{name}.learning_rates")
    for point in points:
      try:
        lopt.make_baseline(name, num_steps=100, warmup_fraction=config.warmup_fraction,
                           schedule=config.schedule, **point)
      except ValueError as e:
        raise ConfigError(f"bad grid point {point} of '{name}': {e}") from None


def _json_floats(array: np.ndarray) -> list:
  """``array`` as nested lists of floats, non-finite values as None (strict JSON has no NaN)."""
  array = np.asarray(array, np.float64)
  return np.where(np.isfinite(array), array, None).tolist()


def _runs_json(runs: dict[str, np.ndarray]) -> dict[str, Any]:
  """Per-seed final metrics and the training-loss curve, averaged over windows of steps."""
  windows = np.array_split(np.arange(runs["losses"].shape[1]), MAX_CURVE_POINTS)
  windows = [w for w in windows if len(w)]
  curve = np.stack([runs["losses"][:, w].mean(axis=1) for w in windows], axis=1)
  return {"final": {k: _json_floats(v) for k, v in runs.items() if k != "losses"},
          "curve": {"steps": [int(w[-1]) + 1 for w in windows], "train_loss": _json_floats(curve)}}


def evaluate_task(spec: suites.TaskSpec, optimizer: str, config: ConfigDict, lo_path: Path,
                  keys: jax.Array) -> dict[str, Any]:
  """Trains the tasks of ``keys`` from ``spec`` with ``optimizer`` (``LEARNED`` or a baseline,
  tuned); returns the JSON of the result. Suites leave the optimizer's envelope on purpose, so its
  ``EnvelopeWarning`` is not shown."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", EnvelopeWarning)
    return _evaluate_task(spec, optimizer, config, lo_path, keys)


def _evaluate_task(spec: suites.TaskSpec, optimizer: str, config: ConfigDict, lo_path: Path,
                   keys: jax.Array) -> dict[str, Any]:
  family = spec.make_family()
  if optimizer == LEARNED:
    tx = lopt.load(lo_path, num_steps=spec.num_steps, roles=family_roles(family))
    return {"hyperparameters": {}, **_runs_json(train_population(family, tx, keys, spec.num_steps))}
  if optimizer == LEARNED_TUNED:
    build = lambda rest: lopt.load(lo_path, spec.num_steps, family_roles(family), learning_rate=1.0,
                                   **rest)
    tuned = tune(family, keys, spec.num_steps, grid_points(config, REFERENCE), build,
                 config.grid_extensions)
    return {"hyperparameters": tuned["best"], "grid": tuned["grid"], **_runs_json(tuned["runs"])}
  tuned = tune_baseline(family, keys, spec.num_steps, optimizer, grid_points(config, optimizer),
                        config.warmup_fraction, config.schedule, config.grid_extensions)
  return {"hyperparameters": tuned["best"], "grid": tuned["grid"], **_runs_json(tuned["runs"])}


def baseline_key(spec: suites.TaskSpec, optimizer: str, config: ConfigDict) -> str:
  """The name under which the baseline ``optimizer`` tuned on ``spec`` is cached: a hash of what
  determines the result (not the task's name in its suite)."""
  identity = {"family": spec.family, "settings": suites.json_ready(spec.kwargs),
              "num_steps": spec.num_steps, "optimizer": optimizer,
              "grid": grid_points(config, optimizer), "seed": config.seed, "seeds": config.seeds,
              "warmup_fraction": config.warmup_fraction, "schedule": config.schedule,
              "grid_extensions": config.grid_extensions,
              "versions": [importlib.metadata.version("learned-optimizers"), jax.__version__]}
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
  return f"{optimizer}-{spec.family}-{digest[:24]}"


def _result(spec: suites.TaskSpec, optimizer: str, config: ConfigDict, lo_path: Path,
            keys: jax.Array) -> dict[str, Any]:
  """``evaluate_task``'s result, read from ``config.baseline_cache`` when it holds it (and stored
  there when it does not)."""
  if optimizer in (LEARNED, LEARNED_TUNED) or not config.baseline_cache:
    return evaluate_task(spec, optimizer, config, lo_path, keys)
  cached = Path(config.baseline_cache) / f"{baseline_key(spec, optimizer, config)}.json"
  if cached.exists():
    return json.loads(cached.read_text())
  result = evaluate_task(spec, optimizer, config, lo_path, keys)
  _write_json(cached, result)
  return result


def _write_json(path: Path, value: Any) -> None:
  """Writes ``value`` to ``path`` atomically (a reader never sees half a file)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  staging = path.with_name(f".{path.name}.tmp")
  staging.write_text(json.dumps(value, allow_nan=False))
  staging.replace(path)


def prepare_workdir(workdir: Path, record: dict[str, Any], overwrite: bool) -> None:
  """Creates ``workdir`` for the evaluation ``record`` or checks that it holds this evaluation
  (which tasks are skipped this time does not matter; see ``default_config``)."""
  record_path = workdir / CONFIG_FILE
  if record_path.exists():
    held = json.loads(record_path.read_text())
    differing = sorted(k for k in held.keys() | record.keys()
                       if k != "skip_tasks" and held.get(k) != record.get(k))
    if differing and not overwrite:
      raise ConfigError(f"the workdir '{workdir}' holds an evaluation with other settings (differs "
                        f"in {differing}); pass --overwrite to start it again or choose another "
                        "--workdir")
    if overwrite:
      shutil.rmtree(workdir)
  elif workdir.exists() and any(workdir.iterdir()):
    raise ConfigError(f"'{workdir}' exists and holds no evaluation (no {CONFIG_FILE}); choose "
                      "another --workdir")
  _write_json(record_path, record)


def run(config: ConfigDict, workdir: str | Path, overwrite: bool = False,
        show_progress: bool = True) -> dict[str, Any]:
  """Evaluates ``config.optimizer`` on ``config.suite`` in ``workdir``; returns the results."""
  validate(config)
  lo_path = resolve_optimizer(config.optimizer)
  card = lopt.read_card(lo_path)
  specs, skipped = suites.build(config.suite, suites.meta_training_tasks(card),
                                on_cpu=jax.default_backend() == "cpu",
                                steps_multiplier=config.steps_multiplier)
  takes_learning_rate = getattr(lopt.ARCHITECTURES.get(card["architecture"]),
                                "takes_learning_rate", False)
  tuned = (LEARNED_TUNED,) if config.tune_learned and takes_learning_rate else ()
  optimizers = (LEARNED, *tuned, *config.baselines)
  record = suites.json_ready({**config.to_dict(), "optimizer_card": card,
                              "tasks": [spec.as_json() for spec in specs]})
  specs, skipped = _skip(specs, skipped, config.skip_tasks)
  workdir = Path(workdir)
  prepare_workdir(workdir, record, overwrite)

  keys = eval_keys(config.seed, config.seeds)
  results = {spec.name: {} for spec in specs}
  with tqdm(total=len(specs) * len(optimizers), desc=f"evaluating on '{config.suite}'",
            disable=not show_progress, dynamic_ncols=True) as bar:
    for spec in specs:
      for optimizer in optimizers:
        bar.set_postfix(task=spec.name, optimizer=optimizer)
        path = workdir / RUNS_DIR / spec.name / f"{optimizer}.json"
        if not path.exists():
          _write_json(path, _result(spec, optimizer, config, lo_path, keys))
        results[spec.name][optimizer] = json.loads(path.read_text())
        bar.update()
  grids = {name: grid_points(config, name) for name in config.baselines}
  return eval_report.write(workdir, record, specs, skipped, results, grids, (LEARNED, *tuned),
                           SCORED_AGAINST)


def _skip(specs: list[suites.TaskSpec], skipped: list[suites.Skipped], names: tuple[str, ...]
          ) -> tuple[list[suites.TaskSpec], list[suites.Skipped]]:
  """``specs`` without the tasks ``names``, which join ``skipped``; an unknown name is an error."""
  unknown = sorted(set(names) - {spec.name for spec in specs})
  if unknown:
    raise ConfigError(f"config.skip_tasks names task(s) {unknown} that this suite does not run; "
                      f"valid choices: {[spec.name for spec in specs]}")
  reason = "left out of this evaluation (config.skip_tasks)"
  return ([spec for spec in specs if spec.name not in names],
          skipped + [suites.Skipped(spec.name, reason) for spec in specs if spec.name in names])


def _default_workdir(optimizer: str, suite: str) -> Path:
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", optimizer.strip("/")).strip("_.")
  return Path("runs") / "eval" / f"{slug}-{suite}"


SHORTHANDS = ("optimizer", "suite", "seeds", "steps_multiplier", "baseline_cache", "skip_tasks")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m metatrain.evaluate",
      description="Evaluate a learned optimizer against tuned baselines on a suite of tasks.",
      epilog="Override any setting with --config.<key>=<value>, e.g. "
             "--config.grids.adamw.learning_rates='(1e-3,1e-2)'; the flags above are shorthands "
             "for theirs (--suite for --config.suite).")
  parser.add_argument("--config", help="evaluation config file (configs/eval_*.py); "
                                        "metatrain.evaluate.default_config() without one")
  parser.add_argument("--optimizer", help="a directory written by lopt.save, or a shipped name")
  parser.add_argument("--suite", help=f"one of {list(suites.SUITES)}")
  parser.add_argument("--seeds", type=int, help="held-out tasks per task of the suite")
  parser.add_argument("--steps-multiplier", type=float, help="multiplies every step budget")
  parser.add_argument("--workdir", help="where results and the report go (default "
                                        "runs/eval/<optimizer>-<suite>)")
  parser.add_argument("--baseline-cache", help="a directory where tuned baselines are kept and "
                      "reused by evaluations of other optimizers on the same tasks")
  parser.add_argument("--skip-tasks", help="comma-separated names of the suite's tasks to leave "
                      "out this time (e.g. a 25x horizon on a CPU)")
  parser.add_argument("--overwrite", action="store_true",
                      help="start again in a workdir that holds an evaluation with other settings")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  return parse_known_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
  """The command line on ``argv`` (default ``sys.argv[1:]``; the console script ``lo-evaluate``);
  returns the exit status."""
  args, overrides = parse_args(argv)
  try:
    # The flags are shorthands for their --config.<key>; setting one key both ways is an error.
    given = {key: getattr(args, key) for key in SHORTHANDS if getattr(args, key) is not None}
    overridden = {override.split("=", 1)[0].removeprefix("--config.") for override in overrides}
    both = sorted(set(given) & overridden)
    if both:
      raise ConfigError(f"--{both[0].replace('_', '-')} and --config.{both[0]} both set "
                        f"{both[0]}; give one")
    config = apply_overrides(load_config(args.config) if args.config else default_config(),
                             overrides)
    for key, value in given.items():
      config[key] = (tuple(name for name in value.split(",") if name) if key == "skip_tasks"
                     else value)
    if not config.optimizer:
      raise ConfigError("no optimizer to evaluate: pass --optimizer <directory or shipped name>")
    workdir = args.workdir or _default_workdir(config.optimizer, config.suite)
    results = run(config, workdir, overwrite=args.overwrite, show_progress=not args.no_progress)
  except (ConfigError, lopt.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  score = "\n".join(eval_report.score_lines(results["score"], REFERENCE))
  print(f"\n{score}\n\nreport: {Path(workdir) / eval_report.REPORT_FILE}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
