"""Save the theta of one meta-training checkpoint as an optimizer, to evaluate or ship a step
other than the one the run saved.

    python -m metatrain.export --run runs/ortho --step 450 --out runs/ortho/optimizer-step450
    python -m metatrain.export --run runs/ortho --best --out runs/ortho/optimizer-best

Theta is noisy from one outer step to the next, and the last one is not always the best; a run
keeps its last two orbax checkpoints (every ``checkpoint_every`` outer steps). ``--step`` defaults
to the latest. The optimizer is written by ``lopt.save`` with the card ``metatrain.experiment``
writes (the run's config, its horizon, the outer step and the meta-training seconds up to it), so
``metatrain.evaluate`` and ``metatrain.ship`` take it like any other. With ``--best``, a run that
validates theta (``config.eval.validate_every``) gives the best-scoring theta its checkpoint keeps
(the one the run will save when it ends; the card records ``selected_outer_step`` and
``validation_score``).
"""

import argparse
import json
import sys
from pathlib import Path

import orbax.checkpoint as ocp
from ml_collections import ConfigDict

import lopt
from metatrain.config import ConfigError, build_lopt
from metatrain.experiment import CONFIG_FILE, card_metadata
from metatrain.train import CHECKPOINT_DIR


def checkpoint_steps(run_dir: Path) -> list[int]:
  """The outer steps of ``run_dir``'s complete checkpoints, in order."""
  directory = run_dir / CHECKPOINT_DIR
  if not directory.is_dir():
    return []
  return sorted(int(d.name) for d in directory.iterdir()
                if d.name.isdigit() and (d / "commit_success.txt").exists())


def export(run_dir: Path, out: Path, step: int | None = None, best: bool = False) -> Path:
  """Saves theta of ``run_dir``'s checkpoint ``step`` (default: the latest) to ``out``; with
  ``best``, the best validated theta that checkpoint keeps."""
  config_path = run_dir / CONFIG_FILE
  if not config_path.is_file():
    raise ConfigError(f"'{run_dir}' is not a meta-training run directory (no {CONFIG_FILE})")
  steps = checkpoint_steps(run_dir)
  if not steps:
    raise ConfigError(f"'{run_dir}' holds no complete checkpoint yet")
  step = steps[-1] if step is None else step
  if step not in steps:
    raise ConfigError(f"'{run_dir}' holds no checkpoint of outer step {step}; valid steps: {steps}")
  if out.exists():
    raise ConfigError(f"'{out}' exists; choose another --out")
  config = ConfigDict(json.loads(config_path.read_text()))
  saved = ocp.StandardCheckpointer().restore((run_dir / CHECKPOINT_DIR / str(step) / "default")
                                             .absolute())
  metadata = card_metadata(config, int(saved["step"]), float(saved["seconds"]))
  theta = saved["theta"]
  if best:
    if "best" not in saved:
      raise ConfigError(f"the checkpoint of step {step} keeps no validated theta (the run did not "
                        "set config.eval.validate_every)")
    theta = saved["best"]["theta"]
    metadata.update(selected_outer_step=int(saved["best"]["step"]),
                    validation_score=float(saved["best"]["score"]))
  lopt.save(out, build_lopt(config), theta, metadata)
  return out


def main(argv: list[str] | None = None) -> int:
  """The command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
  parser = argparse.ArgumentParser(
      prog="python -m metatrain.export",
      description="Save the theta of one meta-training checkpoint as an optimizer.")
  parser.add_argument("--run", required=True, type=Path, help="a run directory (runs/<name>)")
  parser.add_argument("--step", type=int, help="the outer step (default: the latest checkpoint)")
  parser.add_argument("--best", action="store_true",
                      help="the best validated theta that checkpoint keeps, not its last")
  parser.add_argument("--out", required=True, type=Path, help="where to save the optimizer")
  args = parser.parse_args(argv)
  try:
    path = export(args.run, args.out, args.step, args.best)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  metadata = lopt.read_card(path)["metadata"]
  step = metadata.get("selected_outer_step", metadata["outer_steps"])
  print(f"saved the theta of outer step {step} of {args.run} to {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
