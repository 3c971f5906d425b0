"""The report of an evaluation on a suite: markdown, a CSV and a JSON of every run, and PNG plots.

``write`` puts in the workdir:

- ``report.md``: the settings, the score against the reference (tuned AdamW), one table per task of
  mean ± std over seeds of the final metrics of every optimizer, the tuned hyperparameters, the
  tasks left out and why, and the plots;
- ``results.json``: the settings, every task's spec, every optimizer's result (per-seed final
  metrics, loss curves, the tuning grid), the comparisons and the score;
- ``runs.csv``: one row per (task, optimizer, seed) with its final metrics;
- ``curves_<task>.png``: training loss per step, median and interquartile range over seeds;
- ``vs_reference.png``: per task, the learned optimizer's final loss over the reference's;
- ``<axis>.png`` for suites that scale width, depth or horizon: final losses over the factor.

Score, per task, with final losses averaged over seeds: the learned optimizer *beats* the reference
when its mean final loss is lower (or the reference diverged and it did not); its *normalised loss*
is its mean final loss over the reference's. Over tasks: the fraction of wins and the mean and
median normalised loss, for the training loss and, where tasks have one, the test loss.
*Speed-up*: the step budget over the first step at which the learned optimizer's training-loss curve
reaches the reference's final value, both curves being batch losses averaged over seeds and over a
trailing window of a tenth of the training.
"""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from metatrain import report_pieces, suites
from metatrain.report_pieces import plt

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
CSV_FILE = "runs.csv"
SCORED = (("train_loss", "train"), ("test_loss", "test"))


def _label(optimizer: str, result: dict[str, Any], learned: str) -> str:
  if optimizer == learned:
    return "learned optimizer"
  settings = ", ".join(f"{k.replace('learning_rate', 'lr').replace('weight_decay', 'wd')}={v:g}"
                       for k, v in result["hyperparameters"].items())
  return f"{optimizer} ({settings})"


def _finals(result: dict[str, Any]) -> dict[str, np.ndarray]:
  """Per-seed final metrics as arrays (NaN where a run diverged)."""
  return {k: np.asarray(v, np.float64) for k, v in result["final"].items()}


def _finite(x: float) -> float | None:
  return float(x) if np.isfinite(x) else None


def compare(results: dict[str, dict[str, Any]], learned: str, reference: str) -> dict[str, Any]:
  """The learned optimizer against the reference on one task; see the module docstring.

  Means over seeds and the normalised loss are None where a run diverged.
  """
  lo, ref = _finals(results[learned]), _finals(results[reference])
  comparison = {}
  for metric, _ in SCORED:
    if metric in lo and metric in ref:
      lo_mean, ref_mean = np.mean(lo[metric]), np.mean(ref[metric])
      wins = lo_mean < ref_mean or (np.isfinite(lo_mean) and not np.isfinite(ref_mean))
      comparison[metric] = {"learned": _finite(lo_mean), "reference": _finite(ref_mean),
                            "wins": bool(wins), "normalised": _finite(lo_mean / ref_mean)}
  lo_curve, ref_curve = (_smoothed(np.mean(np.asarray(r["curve"]["train_loss"], np.float64), 0))
                         for r in (results[learned], results[reference]))
  steps = results[learned]["curve"]["steps"][-len(lo_curve):]
  reached = np.nonzero(lo_curve <= ref_curve[-1])[0]
  comparison["speedup"] = steps[-1] / steps[reached[0]] if len(reached) else None
  return comparison


def _smoothed(curve: np.ndarray) -> np.ndarray:
  """The trailing moving average of ``curve`` over a tenth of its points (one point less per point
  of the window: entry ``i`` ends at point ``i + window - 1``)."""
  window = max(1, len(curve) // 10)
  total = np.cumsum(np.concatenate([[0.0], curve]))
  return (total[window:] - total[:-window]) / window


def aggregate(comparisons: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """Wins and normalised losses over tasks; see the module docstring."""
  score = {}
  for metric, _ in SCORED:
    rows = [c[metric] for c in comparisons.values() if metric in c]
    if not rows:
      continue
    wins = sum(r["wins"] for r in rows)
    ratios = [r["normalised"] for r in rows if r["normalised"] is not None]
    score[metric] = {"wins": wins, "tasks": len(rows), "win_fraction": wins / len(rows),
                     "learned_diverged": sum(r["learned"] is None for r in rows),
                     "mean_normalised": float(np.mean(ratios)) if ratios else None,
                     "median_normalised": float(np.median(ratios)) if ratios else None,
                     "normalised_over": len(ratios)}
  return score


def _number(x: float | None) -> str:
  return "–" if x is None else f"{x:.4g}"


def score_lines(score: dict[str, Any], reference: str) -> list[str]:
  """The score as markdown bullet points."""
  lines = []
  for metric, split in SCORED:
    if metric in score:
      s = score[metric]
      lines.append(f"- final {split} loss: beats tuned {reference} on {s['wins']}/{s['tasks']} "
                   f"tasks ({s['win_fraction']:.0%}); normalised loss (learned / {reference}) "
                   f"mean {_number(s['mean_normalised'])}, median "
                   f"{_number(s['median_normalised'])} over the {s['normalised_over']} tasks where "
                   f"neither diverged; the learned optimizer diverged on {s['learned_diverged']}")
  return lines


def _other_scores(specs: list[suites.TaskSpec], results: dict[str, dict[str, Any]],
                  contenders: tuple[str, ...], baselines: tuple[str, ...]
                  ) -> dict[str, dict[str, Any]]:
  """Every contender (the learned optimizer at its card's defaults, then tuned on the same grid
  where it ran so) against every baseline of ``baselines`` that ran on all tasks, but the main
  score (the first contender against the first baseline): ``{title: {"reference", "score"}}``."""
  ran = lambda name: bool(specs) and all(name in results[s.name] for s in specs)
  scores = {}
  for i, contender in enumerate(c for c in contenders if ran(c)):
    for baseline in (b for b in baselines if ran(b)):
      if (contender, baseline) == (contenders[0], baselines[0]):
        continue  # The main score.
      how = "tuned on the same grid" if i else "at its card's defaults"
      comparisons = {s.name: compare(results[s.name], contender, baseline) for s in specs}
      scores[f"The learned optimizer {how} against tuned {baseline}"] = {
          "reference": baseline, "score": aggregate(comparisons)}
  return scores


def _plot_vs_reference(comparisons: dict[str, dict[str, Any]], reference: str, path: Path) -> None:
  names = list(comparisons)
  fig, ax = plt.subplots(figsize=(7, 1 + 0.5 * len(names)))
  for offset, (metric, split) in zip((-0.2, 0.2), SCORED):
    for i, name in enumerate(names):
      row = comparisons[name].get(metric)
      if row is None or row["normalised"] is None:
        continue
      ratio = row["normalised"]
      ax.barh(i + offset, ratio - 1, left=1, height=0.4, color="tab:green" if row["wins"] else
              "tab:red", alpha=1.0 if split == "train" else 0.5,
              label=f"{split} loss: {'wins' if row['wins'] else 'loses'}")
  handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
  ax.legend(handles.values(), handles.keys(), fontsize="small")
  ax.axvline(1, color="black", linewidth=0.8)
  ax.set(yticks=range(len(names)), yticklabels=names, xscale="log",
         xlabel=f"final loss, learned optimizer / tuned {reference} (< 1: learned wins)",
         title=f"Learned optimizer vs tuned {reference}")
  ax.invert_yaxis()
  report_pieces.save_figure(fig, path)


def _plot_scaling(axis: str, specs: list[suites.TaskSpec], results: dict[str, Any],
                  labels: dict[str, str], path: Path) -> None:
  """Mean ± std over seeds of the final losses against the factor, one column per base task."""
  bases = list(dict.fromkeys(s.base for s in specs))
  fig, axes = plt.subplots(len(SCORED), len(bases), figsize=(4.5 * len(bases), 7), squeeze=False)
  for column, base in enumerate(bases):
    group = sorted((s for s in specs if s.base == base), key=lambda s: s.factor)
    for row, (metric, split) in enumerate(SCORED):
      ax = axes[row, column]
      for optimizer, label in labels.items():
        finals = [_finals(results[s.name][optimizer]).get(metric) for s in group]
        if any(f is None for f in finals):
          continue
        ax.errorbar([s.factor for s in group], [np.mean(f) for f in finals],
                    yerr=[np.std(f) for f in finals], marker="o", capsize=3, label=label)
      ax.set(xscale="log", yscale="log", xlabel=f"{axis} (x the meta-training task)",
             ylabel=f"final {split} loss", title=base)
      ax.set_xticks([s.factor for s in group], [f"{s.factor}x" for s in group])
      ax.xaxis.set_minor_locator(plt.NullLocator())
  axes[0, 0].legend(fontsize="small")
  report_pieces.save_figure(fig, path)


def _write_csv(path: Path, specs: list[suites.TaskSpec], results: dict[str, Any]) -> None:
  metrics = sorted({m for r in results.values() for o in r.values() for m in o["final"]})
  with path.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["task", "family", "axis", "factor", "num_steps", "optimizer",
                     "hyperparameters", "seed", *metrics])
    for spec in specs:
      for optimizer, result in results[spec.name].items():
        finals = result["final"]
        for seed in range(len(next(iter(finals.values())))):
          writer.writerow([spec.name, spec.family, spec.axis, spec.factor, spec.num_steps,
                           optimizer, json.dumps(result["hyperparameters"]), seed,
                           *("" if m not in finals or finals[m][seed] is None else finals[m][seed]
                             for m in metrics)])


def _grid_text(grids: dict[str, list[dict[str, float]]]) -> list[str]:
  lines = []
  for name, points in grids.items():
    values = {k: sorted({p[k] for p in points}) for k in points[0]}
    lines.append(f"- {name}: " + " x ".join(
        f"{k.replace('_', ' ')}s {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in values.items())
        + f" ({len(points)} point{'s' if len(points) > 1 else ''})")
  return lines


def _extension_text(extensions: int) -> str:
  if not extensions:
    return ""
  return (" A best learning rate at an end of its grid extended the grid past that end, up to "
          f"{extensions} time{'s' if extensions > 1 else ''} (results.json lists every point run).")


def at_grid_end(values: list[float], value: float) -> bool:
  """Whether ``value`` is the smallest or largest of the sorted grid ``values``, three or more: a
  baseline tuned there might do better outside the grid. With two values every choice is an end,
  which says nothing."""
  return len(values) > 2 and value in (values[0], values[-1])


def _edge_note(result: dict[str, Any]) -> str:
  """' (learning rate at the grid's edge)' (or another hyperparameter's name) for each tuned value
  ``at_grid_end`` of its grid."""
  edges = []
  for key, value in result["hyperparameters"].items():
    if at_grid_end(sorted({p[key] for p in result["grid"]}), value):
      edges.append(key.replace("_", " "))
  return f" ({' and '.join(edges)} at the grid's edge)" if edges else ""


def _header(record: dict[str, Any]) -> str:
  """What was evaluated against what, and how."""
  card = record["optimizer_card"]
  meta = card.get("metadata", {})
  if "config" in meta:
    provenance = (f"meta-trained on `{meta['config']['task']['name']}` tasks with horizon "
                  f"{meta['config']['estimator']['horizon']} for {meta.get('outer_steps', '?')} "
                  "outer steps")
  else:
    provenance = ("its card records no meta-training config, so the suites take the quickstart's "
                  "digits MLP as the meta-training task")
  baselines = ", ".join(f"`{b}`" for b in record["baselines"])
  return (f"Learned optimizer: a `{card['architecture']}`; {provenance}. Against {baselines}, "
          f"each tuned per task on its grid with a {record['warmup_fraction']:.0%} linear warmup "
          f"and `{record['schedule']}` schedule, on the same step budget as the learned optimizer "
          "(the task's, in the table; the learned optimizer is told it as its `num_steps`). The "
          "tuned point has the lowest mean final training loss over the seeds; a diverged run "
          f"never wins.{_extension_text(record.get('grid_extensions', 0))} Every optimizer "
          f"trains the same {record['seeds']} held-out tasks per task "
          f"(seeds from `eval_keys({record['seed']}, {record['seeds']})`: task draw, "
          "initialisation and batch order). Final losses are on the whole train and test splits; "
          "mean ± std over seeds.")


def _score_table(specs: list[suites.TaskSpec], comparisons: dict[str, dict[str, Any]],
                 reference: str) -> list[str]:
  lines = [f"| task | family | steps | learned train loss | {reference} train loss | normalised "
           f"| learned test loss | {reference} test loss | normalised | speed-up |",
           "|---" * 10 + "|"]
  for spec in specs:
    c = comparisons[spec.name]
    cells = []
    for metric, _ in SCORED:
      row = c.get(metric)
      cells += ([_number(row["learned"]), _number(row["reference"]),
                 _number(row["normalised"]) + (" (wins)" if row["wins"] else "")]
                if row else ["–"] * 3)
    speedup = "–" if c["speedup"] is None else f"{c['speedup']:.2f}x"
    lines.append(f"| {spec.name} | {spec.family} | {spec.num_steps} | " + " | ".join(cells)
                 + f" | {speedup} |")
  return lines


def _row_label(optimizer: str, result: dict[str, Any], learned: str) -> str:
  return _label(optimizer, result, learned) + (_edge_note(result) if "grid" in result else "")


def task_table(results: dict[str, Any], learned: str) -> str:
  """One task's markdown table: every optimizer's final metrics, mean ± std over the seeds."""
  return report_pieces.results_table({
      _row_label(optimizer, result, learned): report_pieces.summarize(_finals(result))
      for optimizer, result in results.items()})


def _task_section(spec: suites.TaskSpec, results: dict[str, Any], learned: str,
                  workdir: Path) -> list[str]:
  """One task's table of every optimizer and its loss-curve plot (written to ``workdir``)."""
  curves = {_row_label(optimizer, result, learned):
            np.asarray(result["curve"]["train_loss"], np.float64)
            for optimizer, result in results.items()}
  plot = f"curves_{spec.name}.png"
  report_pieces.plot_inner_curves(curves, workdir / plot,
                                  title=f"{spec.name} ({spec.num_steps} steps)",
                                  steps=np.asarray(results[learned]["curve"]["steps"]))
  settings = ", ".join(f"{k}={v}" for k, v in spec.kwargs.items())
  return [f"### {spec.name}", "", f"`{spec.family}({settings})`, {spec.num_steps} steps.", "",
          task_table(results, learned), "", f"![{spec.name}]({plot})", ""]


def write(workdir: Path, record: dict[str, Any], specs: list[suites.TaskSpec],
          skipped: list[suites.Skipped], results: dict[str, dict[str, Any]],
          grids: dict[str, list[dict[str, float]]], contenders: tuple[str, ...],
          baselines: tuple[str, ...]) -> dict[str, Any]:
  """Writes the report files of an evaluation (see the module docstring); returns the JSON written.

  ``record`` holds the evaluation's settings and the optimizer's card; ``results[task][optimizer]``
  is the result of ``metatrain.evaluate.evaluate_task``. ``contenders`` name the learned optimizer
  (first, at its card's defaults) and its tuned form, ``baselines`` the baselines every contender
  is scored against; the first of them is the reference of the main score.
  """
  learned, reference = contenders[0], baselines[0]
  comparisons = {s.name: compare(results[s.name], learned, reference) for s in specs}
  score = aggregate(comparisons)
  other_scores = _other_scores(specs, results, contenders, baselines)
  written = {"settings": record, "score": score, "other_scores": other_scores,
             "comparisons": comparisons,
             "skipped": [{"task": s.name, "reason": s.reason} for s in skipped],
             "tasks": {s.name: {"spec": s.as_json(), "results": results[s.name]} for s in specs}}
  (workdir / RESULTS_FILE).write_text(json.dumps(written, allow_nan=False))
  _write_csv(workdir / CSV_FILE, specs, results)

  plots = []
  if specs:
    _plot_vs_reference(comparisons, reference, workdir / "vs_reference.png")
    plots.append(f"![learned vs {reference}](vs_reference.png)")
  for axis in suites.AXES:
    scaled = [s for s in specs if s.axis == axis]
    if len({s.factor for s in scaled}) > 1:
      labels = {o: o if o != learned else "learned optimizer" for o in results[scaled[0].name]}
      _plot_scaling(axis, scaled, results, labels, workdir / f"{axis}.png")
      plots.append(f"![final loss over {axis}]({axis}.png)")

  lines = [f"# `{record['optimizer']}` on the `{record['suite']}` suite", "", _header(record), "",
           f"## Score against tuned {reference}", "", *score_lines(score, reference), "",
           *[line for title, other in other_scores.items()
             for line in (f"### {title}", "", *score_lines(other["score"], other["reference"]),
                          "")],
           *plots, "", *_score_table(specs, comparisons, reference), "", "## Tasks", ""]
  for spec in specs:
    lines += _task_section(spec, results[spec.name], learned, workdir)
  if skipped:
    lines += ["## Tasks left out", ""] + [f"- `{s.name}`: {s.reason}" for s in skipped] + [""]
  lines += ["## Grids", "", *_grid_text(grids), ""]
  (workdir / REPORT_FILE).write_text("\n".join(lines))
  return written
