"""The evaluation report of a run: a markdown table, a JSON of the numbers and PNG plots."""

from pathlib import Path
from typing import Any

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLUMNS = (("train_loss", "final train loss"), ("test_loss", "final test loss"),
           ("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy"))


def _cell(stats: dict[str, float]) -> str:
  return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def results_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
  """A markdown table with one row per optimizer of mean ± std of the final metrics."""
  lines = ["| optimizer | " + " | ".join(title for _, title in COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 1) + "|"]
  for name, stats in rows.items():
    lines.append(f"| {name} | " + " | ".join(_cell(stats[key]) for key, _ in COLUMNS) + " |")
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
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_inner_curves(curves: dict[str, np.ndarray], path: Path) -> None:
  """Median and interquartile range over tasks of the training loss per inner step."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, losses in curves.items():
    low, median, high = np.percentile(losses, [25, 50, 75], axis=0)
    steps = np.arange(len(median))
    ax.plot(steps, median, label=name)
    ax.fill_between(steps, low, high, alpha=0.2)
  ax.set(xlabel="inner step", ylabel="training loss (batch), median and IQR", yscale="log",
         title="Held-out tasks: learned optimizer vs tuned Adam")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
