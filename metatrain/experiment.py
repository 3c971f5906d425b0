"""One experiment, end to end: meta-train, save the optimizer, reload it from disk, evaluate, report.

The run directory ``<workdir>/<config.name>`` holds ``config.json``, ``metrics.jsonl``, orbax
``checkpoints/``, the saved ``optimizer/``, its ``evaluation/`` (the in-distribution suite of
``metatrain.evaluate``: fresh tasks of every member, against ``config.eval.baselines`` tuned as in
every suite), ``results.json``, ``report.md`` and PNG plots. Starting
the same command again resumes from the last checkpoint; a run directory that holds a different
config is refused unless the caller asks to resume it with the new config or to overwrite it.
"""

import json
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

import lopt
from metatrain import eval_report, evaluate, report_pieces, sharding
from metatrain.config import ConfigError, build_lopt, population_slice_sizes
from metatrain.metrics_log import read_metrics
from metatrain.train import meta_train

CONFIG_FILE = "config.json"
OPTIMIZER_DIR = "optimizer"
EVALUATION_DIR = "evaluation"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def git_commit() -> str:
  """The commit of the code that runs (``-dirty`` if it has uncommitted changes), or ``unknown``."""
  repo = Path(__file__).resolve().parents[1]
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return commit + ("-dirty" if dirty else "")


def config_as_json(config: ConfigDict) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists), as written to ``config.json``."""
  return json.loads(json.dumps(config.to_dict()))


def card_metadata(config: ConfigDict, outer_steps: int, seconds: float) -> dict[str, Any]:
  """What the card of an optimizer meta-trained by ``config`` records: the horizon it plans for,
  the config, the outer steps and seconds it took, the machine and the code's commit."""
  return {"num_steps": config.estimator.horizon, "config": config_as_json(config),
          "outer_steps": outer_steps, "meta_training_seconds": seconds,
          "machine": f"{platform.machine()} {platform.processor()}".strip(),
          "devices": [str(d) for d in jax.devices()], "git_commit": git_commit()}


def prepare_run_dir(run_dir: Path, config: ConfigDict, resume: bool, overwrite: bool) -> None:
  """Creates ``run_dir`` or checks that it holds this config; see the module docstring."""
  wanted = config_as_json(config)
  config_path = run_dir / CONFIG_FILE
  if config_path.exists() and not overwrite:
    held = json.loads(config_path.read_text())
    if held != wanted and not resume:
      old, new = _flatten(held), _flatten(wanted)
      differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
      raise ConfigError(f"the run directory '{run_dir}' holds a run with a different config "
                        f"(differs in {differing}); pass --resume to continue it with this config "
                        "or --overwrite to start it again")
  elif run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
    raise ConfigError(f"'{run_dir}' exists and is not a run directory (no {CONFIG_FILE}); choose "
                      "another config.name or --workdir, or pass --overwrite to replace it")
  if overwrite and run_dir.exists():
    shutil.rmtree(run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  staging = config_path.with_suffix(".tmp")
  staging.write_text(json.dumps(wanted, indent=2, sort_keys=True))
  staging.replace(config_path)


def run(config: ConfigDict, workdir: str, resume: bool = False, overwrite: bool = False,
        show_progress: bool = True) -> dict[str, Any]:
  """Runs the whole experiment (config already validated); returns the evaluation results."""
  run_dir = Path(workdir) / config.name
  sharding.check_population(population_slice_sizes(config), sharding.population_mesh())
  if jax.process_index() == 0:
    prepare_run_dir(run_dir, config, resume, overwrite)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("run directory prepared")
  state = meta_train(config, run_dir, show_progress)
  if jax.process_index() != 0:
    return {}  # Process 0 saves and evaluates the optimizer.

  horizon = config.estimator.horizon
  metadata = card_metadata(config, int(state["step"]), float(state["seconds"]))
  theta = state["theta"]
  if "best" in state:  # Chosen on validation tasks (metatrain.selection), not the last theta.
    theta = state["best"].theta
    metadata.update(selected_outer_step=int(state["best"].step),
                    validation_score=float(state["best"].score))
  lopt.save(run_dir / OPTIMIZER_DIR, build_lopt(config), theta, metadata)
  # The saved optimizer is evaluated from disk, through the public API, as any other: the
  # in-distribution suite (fresh tasks of every member) against the baselines, each tuned on the
  # same grids and schedule as in every evaluation suite (metatrain.evaluate).
  settings = evaluate.default_config()
  settings.update(optimizer=str(run_dir / OPTIMIZER_DIR), suite="in-distribution",
                  seeds=config.eval.num_seeds, seed=config.seed,
                  baselines=tuple(config.eval.baselines))
  evaluation = evaluate.run(settings, run_dir / EVALUATION_DIR, overwrite=True,
                            show_progress=show_progress)

  metrics = read_metrics(run_dir)
  first, last = report_pieces.meta_loss_change(metrics)
  report_pieces.plot_meta_training(metrics, run_dir / "meta_training.png")
  results = {"score": evaluation["score"], "other_scores": evaluation["other_scores"],
             "evaluation": EVALUATION_DIR, "meta_loss_first_tenth": first,
             "meta_loss_last_tenth": last, "num_eval_tasks": config.eval.num_seeds,
             "inner_steps": horizon, "meta_training_seconds": metadata["meta_training_seconds"]}
  (run_dir / "results.json").write_text(json.dumps(results, indent=2))
  est = config.estimator
  horizons = (f"{horizon}" if not est.min_horizon else
              f"drawn from multiples of {est.unroll_length} in [{est.min_horizon}, {horizon}]")
  tables = "\n\n".join(
      f"Held-out `{task}` tasks ({config.eval.num_seeds} seeds, {horizon} steps; mean ± std):\n\n"
      f"{eval_report.task_table(entry['results'], evaluate.LEARNED)}"
      for task, entry in evaluation["tasks"].items())
  score = "\n".join(eval_report.score_lines(evaluation["score"], evaluate.REFERENCE))
  text = (f"# Run `{config.name}`\n\n"
          f"Meta-trained a `{config.lopt.name}` learned optimizer for {metadata['outer_steps']} outer "
          f"steps ({metadata['meta_training_seconds']:.0f} s of meta-training on "
          f"{metadata['machine'] or 'this machine'}) with {est.name}, population "
          f"{est.population}, unrolls of {est.unroll_length} steps, inner horizon {horizons}, on "
          f"`{config.task.name}` tasks.\n\n"
          f"Meta-loss ({est.meta_loss} loss over an unroll, normalisation `{est.normalization}`, "
          f"loss weight power {est.loss_weight_power:g}, mean over the population): {first:.4f} "
          f"over the first tenth of meta-training, {last:.4f} over the last tenth.\n\n"
          f"{_selection_text(metadata, config)}"
          "![meta-training](meta_training.png)\n\n"
          f"## Against tuned {evaluate.REFERENCE}\n\n{score}\n\n{tables}\n\n"
          f"Every run, grid and loss curve: [{EVALUATION_DIR}/report.md]({EVALUATION_DIR}/report.md)"
          "\n")
  (run_dir / "report.md").write_text(text)
  print(f"\n{score}\n\n{tables}\n\nreport: {run_dir / 'report.md'}")
  return results


def _selection_text(metadata: dict[str, Any], config: ConfigDict) -> str:
  if "selected_outer_step" not in metadata:
    return ""
  return (f"Saved optimizer: theta of outer step {metadata['selected_outer_step']}, the lowest "
          f"validation score (mean log final training loss on {config.eval.validation_seeds} "
          f"validation tasks per member, every {config.eval.validate_every} outer steps): "
          f"{metadata['validation_score']:.4f}.\n\n")
