"""Ship a meta-trained learned optimizer in ``checkpoints/``, with its evaluations on its card.

    python -m metatrain.ship --optimizer runs/width_mixture_mup/optimizer --name mulo-digits-mlp \
        --evaluations runs/eval/mulo-in-distribution runs/eval/mulo-horizon ... \
        --device "2-core AMD EPYC CPU" --trained-on "2-core AMD EPYC CPU" --compute-note "…"

Writes ``checkpoints/<name>/``: the optimizer's files as meta-training saved them (its theta byte
for byte) with its card's metadata extended (``replace_metadata``). The metadata gains ``compute``
(the meta-training's machine, seconds and hours, and a note) and ``evaluation``: for each suite (an
evaluation workdir of ``metatrain.evaluate``), the tasks where the learned optimizer beats tuned
AdamW on final training loss, the median of its final training loss divided by AdamW's, per task the
learned and AdamW mean final losses, the report's other scores (the learned optimizer tuned on
AdamW's grid, against tuned Muon; wins and median), and the machine the suite ran on. Each suite's ``report.md``,
``runs.csv`` and summary plots (not the per-task curves, to keep the repository small) are copied to
``checkpoints/<name>/evaluation/<suite>/``. Shipping an optimizer of ``checkpoints/`` again
(``--optimizer checkpoints/<name> --overwrite``) with new evaluations adds their suites to its card
and keeps the others. An existing folder of that name is replaced only with ``--overwrite``; the new
one is written beside it and moved into place when complete, so a failure leaves the shipped
optimizer as it was.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import lopt
from lopt import shipped
from lopt.checkpoint import replace_metadata
from metatrain import eval_report
from metatrain.evaluate import CONFIG_FILE, LEARNED, REFERENCE

SUMMARY_PLOTS = ("vs_reference.png", "width.png", "depth.png", "horizon.png")
REPORT_FILES = (eval_report.REPORT_FILE, eval_report.CSV_FILE, *SUMMARY_PLOTS)


def suite_summary(results: dict[str, Any]) -> dict[str, Any]:
  """The card's summary of one evaluation's ``results.json``."""
  score = results["score"].get("train_loss", {})
  tasks = {}
  for name, comparison in results["comparisons"].items():
    tasks[name] = {f"{who}_{split}_loss": comparison[f"{split}_loss"][side]
                   for split in ("train", "test") if f"{split}_loss" in comparison
                   for who, side in ((LEARNED, "learned"), (REFERENCE, "reference"))}
  others = {title: {"wins": other["score"].get("train_loss", {}).get("wins", 0),
                    "median_normalised_train_loss":
                        other["score"].get("train_loss", {}).get("median_normalised")}
            for title, other in results.get("other_scores", {}).items()}
  return {f"beats_tuned_{REFERENCE}_train_loss": score.get("wins", 0),
          "median_normalised_train_loss": score.get("median_normalised"),
          "num_tasks": len(tasks), "tasks": tasks, **({"other_scores": others} if others else {})}


def ship(optimizer: Path, name: str, evaluations: list[Path], device: str,
         trained_on: str | None = None, compute_note: str = "", directory: Path | None = None,
         overwrite: bool = False) -> Path:
  """Writes ``directory/name`` (default ``checkpoints/<name>``) as the module docstring says;
  returns its path. The suites and ``compute`` already on ``optimizer``'s card (and its
  ``evaluation/`` reports) are kept unless given again."""
  directory = shipped.CHECKPOINTS if directory is None else directory
  target = directory / name
  if target.exists() and not overwrite:
    raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
  card = lopt.load_meta_params(optimizer)[2]  # Checks that the optimizer loads.
  metadata = dict(card.get("metadata", {}))
  evaluation = dict(metadata.get("evaluation", {}))
  summaries = dict(evaluation.get("suites", {}))
  reports = {}
  seeds = {evaluation["seeds"]} if summaries else set()
  for workdir in evaluations:
    results = json.loads((workdir / eval_report.RESULTS_FILE).read_text())
    settings = json.loads((workdir / CONFIG_FILE).read_text())
    summaries[settings["suite"]] = {**suite_summary(results), "device": device}
    reports[settings["suite"]] = workdir
    seeds.add(settings["seeds"])
  if len(seeds) > 1:
    raise ValueError(f"the evaluations use different numbers of seeds {sorted(seeds)}; a card "
                     "states one")
  if trained_on is not None:
    seconds = metadata.get("meta_training_seconds")
    metadata["compute"] = {"device": trained_on, "meta_training_seconds": seconds,
                           "device_hours": None if seconds is None else seconds / 3600,
                           "note": compute_note}
  evaluation.update(
      command=f"python -m metatrain.evaluate --optimizer {name} --suite <suite>",
      reference=f"{REFERENCE} (learning rate x weight decay grid, warmup + cosine)",
      seeds=seeds.pop() if seeds else None, suites=dict(sorted(summaries.items())))
  metadata["evaluation"] = evaluation
  staging = directory / f".{name}.staging"
  shutil.rmtree(staging, ignore_errors=True)
  try:
    # The optimizer's files as they are (theta byte for byte, earlier reports), then the new card
    # and reports.
    shutil.copytree(optimizer, staging)
    replace_metadata(staging, metadata)
    for suite, source in reports.items():
      shutil.rmtree(staging / "evaluation" / suite, ignore_errors=True)
      (staging / "evaluation" / suite).mkdir(parents=True)
      for file in REPORT_FILES:
        if (source / file).is_file():
          shutil.copy(source / file, staging / "evaluation" / suite / file)
    if target.exists():
      shutil.rmtree(target)
    staging.rename(target)
  finally:
    shutil.rmtree(staging, ignore_errors=True)  # Nothing half-written is left behind.
  return target


def main(argv: list[str] | None = None) -> int:
  """The command line on ``argv`` (default ``sys.argv[1:]``; the console script ``lo-ship``);
  returns the exit status."""
  parser = argparse.ArgumentParser(prog="python -m metatrain.ship", description=__doc__.split(
      "\n")[0])
  parser.add_argument("--optimizer", required=True, type=Path,
                      help="the directory meta-training wrote (lopt.save)")
  parser.add_argument("--name", required=True, help="its name in checkpoints/")
  parser.add_argument("--evaluations", nargs="*", type=Path, default=[],
                      help="workdirs of metatrain.evaluate, one per suite (added to, or replacing, "
                           "the suites already on the optimizer's card)")
  parser.add_argument("--device", required=True, help="where these evaluations ran, in words")
  parser.add_argument("--trained-on", help="where meta-training ran, in words (sets the card's "
                      "compute; kept from the optimizer's card when not given)")
  parser.add_argument("--compute-note", default="", help="anything else about the compute used")
  parser.add_argument("--overwrite", action="store_true", help="replace a shipped optimizer")
  args = parser.parse_args(argv)
  try:
    target = ship(args.optimizer, args.name, args.evaluations, args.device, args.trained_on,
                  args.compute_note, overwrite=args.overwrite)
  except (FileExistsError, ValueError, lopt.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"shipped {target}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
