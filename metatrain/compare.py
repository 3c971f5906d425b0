"""Compare two evaluations of the same suite seed by seed: which optimizer is better, and how surely.

    python -m metatrain.compare runs/eval/a-in-distribution runs/eval/b-in-distribution
    python -m metatrain.compare A B --optimizers learned_tuned --metric test_loss --names new,shipped

Each argument is an evaluation workdir of ``metatrain.evaluate`` (or any folder holding its
``runs.csv``). ``metatrain.evaluate`` trains every optimizer on the same held-out tasks, seed ``s``
being the same task draw, initialisation and batch order for all of them, so two evaluations of
one suite with the same ``--config.seed`` can be paired: for each task, optimizer entry and seed
``s`` the ratio ``r_s = L_A(s) / L_B(s)`` of final losses. The table gives, per task and entry, the
mean of each side over seeds, the geometric mean ``exp(mean_s log r_s)`` of the paired ratios,
their smallest and largest, and which side is lower on *every* seed. A difference that holds on
every seed is one the seeds agree on; one whose paired ratios straddle 1 is not, whatever the
means say (the spread of a loss over tasks is often far larger than the difference between two
optimizers on each task, and pairing removes that spread).

Tasks are matched by name and step budget; a seed where either run has no finite final loss
(diverged) is left out of the ratios and counted. Where both folders hold ``results.json``, their
evaluation seeds are checked to be the same.
"""

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from metatrain.eval_report import CSV_FILE, RESULTS_FILE

DEFAULT_OPTIMIZERS = ("learned", "learned_tuned")
# The columns of runs.csv that say which run a row is; the others are final metrics.
ID_COLUMNS = ("task", "family", "axis", "factor", "num_steps", "optimizer", "hyperparameters",
              "seed")


class CompareError(ValueError):
  """The two evaluations cannot be compared as asked."""


def read_runs(directory: Path) -> dict[tuple[str, int, str], dict[int, dict[str, str]]]:
  """``{(task, num_steps, optimizer): {seed: row}}`` of ``directory``'s ``runs.csv``."""
  path = directory / CSV_FILE
  if not path.is_file():
    raise CompareError(f"'{directory}' holds no {CSV_FILE}: pass an evaluation workdir of "
                       "python -m metatrain.evaluate")
  runs = defaultdict(dict)
  with path.open(newline="") as f:
    for row in csv.DictReader(f):
      runs[(row["task"], int(row["num_steps"]), row["optimizer"])][int(row["seed"])] = row
  return dict(runs)


def check_same_seeds(a: Path, b: Path) -> None:
  """Raises ``CompareError`` when both evaluations record their seeds and these differ."""
  settings = []
  for directory in (a, b):
    path = directory / RESULTS_FILE
    if not path.is_file():
      return
    settings.append(json.loads(path.read_text())["settings"])
  for key in ("seed", "seeds"):
    if settings[0].get(key) != settings[1].get(key):
      raise CompareError(f"the evaluations used different {key} ({settings[0].get(key)} and "
                         f"{settings[1].get(key)}): their held-out tasks differ and cannot be "
                         "paired; evaluate both with the same --config.seed")


def _final(row: dict[str, str], metric: str) -> float | None:
  value = row.get(metric, "")
  if value == "" or not math.isfinite(float(value)):
    return None
  return float(value)


def paired_rows(runs_a, runs_b, optimizers: tuple[str, ...], metric: str) -> list[dict]:
  """One comparison per (task, step budget, optimizer entry) present in both evaluations."""
  available = {m for runs in (runs_a, runs_b) for seeds in runs.values()
               for row in seeds.values() for m in row} - set(ID_COLUMNS)
  if metric not in available:
    raise CompareError(f"no metric '{metric}' in the runs; valid: {sorted(available)}")
  entries = sorted({key[2] for key in runs_a} & {key[2] for key in runs_b})
  unknown = [o for o in optimizers if o not in entries]
  if unknown:
    raise CompareError(f"optimizer entries {unknown} are not in both evaluations; valid: {entries}")
  common = [key for key in runs_a if key in runs_b and key[2] in optimizers]
  if not common:
    raise CompareError("the two evaluations share no task with the same step budget")
  rows = []
  for task, num_steps, optimizer in sorted(common):
    seeds_a, seeds_b = runs_a[(task, num_steps, optimizer)], runs_b[(task, num_steps, optimizer)]
    pairs = [(_final(seeds_a[s], metric), _final(seeds_b[s], metric))
             for s in sorted(set(seeds_a) & set(seeds_b))]
    finite = [(x, y) for x, y in pairs if x is not None and y is not None and x > 0 and y > 0]
    log_ratios = [math.log(x / y) for x, y in finite]
    rows.append(dict(task=task, num_steps=num_steps, optimizer=optimizer,
                     mean_a=_mean([x for x, _ in finite]), mean_b=_mean([y for _, y in finite]),
                     ratio=math.exp(_mean(log_ratios)) if log_ratios else None,
                     lowest=math.exp(min(log_ratios)) if log_ratios else None,
                     highest=math.exp(max(log_ratios)) if log_ratios else None,
                     paired=len(finite), left_out=len(pairs) - len(finite)))
  return rows


def _mean(values: list[float]) -> float | None:
  return sum(values) / len(values) if values else None


def verdict(row: dict, names: tuple[str, str]) -> str:
  """Which side is lower on every paired seed, or ``mixed``."""
  if row["ratio"] is None:
    return "no finite pair"
  if row["highest"] < 1:
    return f"{names[0]} lower on every seed"
  if row["lowest"] > 1:
    return f"{names[1]} lower on every seed"
  return "mixed"


def _number(x: float | None) -> str:
  return "-" if x is None else f"{x:.4g}"


def table(rows: list[dict], names: tuple[str, str], metric: str) -> str:
  """The markdown table of ``paired_rows``."""
  a, b = names
  lines = [f"| task | steps | entry | {a} mean {metric} | {b} mean {metric} | {a} / {b} "
           "(paired, geometric mean) | lowest..highest | seeds | verdict |",
           "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    seeds = f"{row['paired']}" + (f" (+{row['left_out']} not finite)" if row["left_out"] else "")
    lines.append(f"| {row['task']} | {row['num_steps']} | {row['optimizer']} | "
                 f"{_number(row['mean_a'])} | {_number(row['mean_b'])} | {_number(row['ratio'])} | "
                 f"{_number(row['lowest'])}..{_number(row['highest'])} | {seeds} | "
                 f"{verdict(row, names)} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m metatrain.compare", description=__doc__.split(
      "\n")[0])
  parser.add_argument("a", type=Path, help="an evaluation workdir (the numerator)")
  parser.add_argument("b", type=Path, help="an evaluation workdir of the same suite")
  parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                      help="comma-separated optimizer entries of runs.csv to compare "
                           "(default: %(default)s; also e.g. adamw, muon)")
  parser.add_argument("--metric", default="train_loss", help="final metric (default: %(default)s)")
  parser.add_argument("--names", default="A,B", help="two labels for the table (default: A,B)")
  args = parser.parse_args(argv)
  names = tuple(args.names.split(","))
  try:
    if len(names) != 2:
      raise CompareError(f"--names takes two comma-separated labels, got '{args.names}'")
    check_same_seeds(args.a, args.b)
    rows = paired_rows(read_runs(args.a), read_runs(args.b),
                       tuple(args.optimizers.split(",")), args.metric)
  except CompareError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(table(rows, names, args.metric))
  return 0


if __name__ == "__main__":
  sys.exit(main())
