"""Metrics of a run: one JSON line per outer step in ``metrics.jsonl``, mirrored to wandb.

wandb runs offline unless the user is logged in (``WANDB_API_KEY`` or a netrc entry) or sets
``WANDB_MODE``; an offline run can be uploaded later with ``wandb sync``. On resume the file is cut
back to the resumed step, so it ends up exactly as an uninterrupted run would have written it.
"""

import json
import netrc
import os
import uuid
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
_WANDB_ID_FILE = "wandb_id.txt"


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """Returns the metrics rows of a run, in order."""
  path = Path(run_dir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wandb_mode() -> str:
  if os.environ.get("WANDB_MODE"):
    return os.environ["WANDB_MODE"]
  if os.environ.get("WANDB_API_KEY"):
    return "online"
  try:
    logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
  except (FileNotFoundError, netrc.NetrcParseError):
    logged_in = False
  return "online" if logged_in else "offline"


class MetricsLog:
  """Appends metrics rows to ``<run_dir>/metrics.jsonl`` (and wandb), resuming after ``start_step``."""

  def __init__(self, run_dir: Path, start_step: int, config: dict, use_wandb: bool, project: str):
    self._path = run_dir / METRICS_FILE
    kept = [row for row in read_metrics(run_dir) if row["step"] <= start_step]
    self._path.write_text("".join(json.dumps(row) + "\n" for row in kept))
    self._file = self._path.open("a")
    self._wandb_run = None
    if use_wandb:
      import wandb  # Imported here: runs without wandb logging never pay for it.
      id_file = run_dir / _WANDB_ID_FILE
      if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:12])
      self._wandb_run = wandb.init(project=project, name=run_dir.name, id=id_file.read_text(),
                                   resume="allow", dir=str(run_dir), config=config,
                                   mode=_wandb_mode(), settings=wandb.Settings(silent=True))

  def write(self, step: int, metrics: dict[str, float]) -> None:
    row = {"step": step, **metrics}
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._wandb_run is not None:
      self._wandb_run.log(metrics, step=step)

  def close(self) -> None:
    self._file.close()
    if self._wandb_run is not None:
      self._wandb_run.finish()
