"""Command line: ``python -m metatrain --config configs/quickstart.py [--config.<key>=<value> ...]``.

Options: ``--workdir DIR`` (default ``runs``); ``--resume`` continues a run directory that holds a
different config with this one; ``--overwrite`` starts the run again from scratch. Bad input prints
one ``error:`` line and exits with status 2 before anything is written.
"""

import argparse
import sys

from metatrain.config import (ConfigError, apply_overrides, load_config, parse_known_args,
                              validate)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m metatrain", description="Meta-train, save and evaluate a learned optimizer.",
      epilog="Override any config value with --config.<key>=<value>, e.g. --config.outer.steps=50.")
  parser.add_argument("--config", required=True, help="experiment config file (configs/*.py)")
  parser.add_argument("--workdir", default="runs", help="parent of the run directory")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--resume", action="store_true",
                    help="continue a run directory that holds a different config with this config")
  mode.add_argument("--overwrite", action="store_true", help="delete the run directory and start again")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  return parse_known_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
  """The command line on ``argv`` (default ``sys.argv[1:]``; the console script ``lo-metatrain``);
  returns the exit status."""
  args, overrides = parse_args(argv)
  import lopt  # Imported after argument parsing so that --help is quick.
  try:
    config = apply_overrides(load_config(args.config), overrides)
    validate(config)
    from metatrain import experiment, sharding
    sharding.initialize_distributed(**config.distributed)
    experiment.run(config, args.workdir, resume=args.resume, overwrite=args.overwrite,
                   show_progress=not args.no_progress)
  except (ConfigError, lopt.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
