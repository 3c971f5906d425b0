"""The pieces both reports are made of (a run's ``report.md`` by ``metatrain.experiment``, an
evaluation's by ``metatrain.eval_report``): mean ± std tables in markdown and PNG plots."""

from pathlib import Path
from typing import Any

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLUMNS = (("train_loss", "final train loss"), ("test_loss", "final test loss"),
           ("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy"))


def summarize(results: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """Mean and standard deviation over tasks of every final metric."""
  return {name: {"mean": float(np.mean(value)), "std": float(np.std(value))}
          for name, value in results.items() if name != "losses"}


def _cell(stats: dict[str, float] | None) -> str:
  return "–" if stats is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def results_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
  """A markdown table with one row per optimizer of mean ± std of the final metrics (the columns
  that no optimizer has, e.g. accuracy on a regression task, are left out)."""
  columns = [(key, title) for key, title in COLUMNS if any(key in s for s in rows.values())]
  lines = ["| optimizer | " + " | ".join(title for _, title in columns) + " |",
           "|---" * (len(columns) + 1) + "|"]
  for name, stats in rows.items():
    lines.append(f"| {name} | " + " | ".join(_cell(stats.get(key)) for key, _ in columns) + " |")
  return "\n".join(lines)


def meta_loss_change(metrics: list[dict[str, Any]]) -> tuple[float, float]:
  """Mean meta-loss over the first and the last tenth of the outer steps."""
  losses = np.array([row["meta_loss"] for row in metrics])
  window = max(1, len(losses) // 10)
  return float(losses[:window].mean()), float(losses[-window:].mean())


def plot_meta_training(metrics: list[dict[str, Any]], path: Path) -> None:
  steps = np.array([row["step"] for row in metrics])
  losses = np.array([row["meta_loss"] for row in metrics])
  window = max(1, len(losses) // 50)
  smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(steps, losses, alpha=0.3, label="meta-loss")
  ax.plot(steps[window - 1:], smooth, label=f"moving average ({window} steps)")
  ax.set(xlabel="outer step", ylabel="meta-loss (mean train loss over an unroll)",
         title="Meta-training", yscale="log")
  ax.legend(loc="upper left")
  validated = [row for row in metrics if "validation_score" in row]
  if validated:  # metatrain.selection's scores, on a second axis.
    validation = ax.twinx()
    validation.plot([row["step"] for row in validated],
                    [row["validation_score"] for row in validated], "o-", color="tab:red",
                    label="validation score")
    validation.set_ylabel("validation score (mean log final training loss)")
    validation.legend(loc="upper right")
  save_figure(fig, path)


def plot_inner_curves(curves: dict[str, np.ndarray], path: Path,
                      title: str = "Held-out tasks: learned optimizer vs tuned Adam",
                      steps: np.ndarray | None = None) -> None:
  """Median and interquartile range over tasks of the training loss per inner step.

  ``curves[name]`` is ``[tasks, points]``; ``steps`` gives each point's step (0, 1, ... if None).
  """
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, losses in curves.items():
    low, median, high = np.percentile(losses, [25, 50, 75], axis=0)
    x = np.arange(len(median)) if steps is None else steps
    ax.plot(x, median, label=name)
    ax.fill_between(x, low, high, alpha=0.2)
  ax.set(xlabel="inner step", ylabel="training loss (batch), median and IQR", yscale="log",
         title=title)
  ax.legend()
  save_figure(fig, path)


def save_figure(fig: plt.Figure, path: Path) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
