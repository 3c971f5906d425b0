"""Evaluate the quickstart's learned optimizer on one suite against tuned AdamW, Muon, Adam, Lion
and SGD.

Run with ``python -m metatrain.evaluate --config configs/eval_quickstart.py`` after ``make run``;
pick the suite with ``--suite`` (or ``--config.suite=width``), and override any setting of
``metatrain.evaluate.default_config``, e.g. ``--config.seeds=5`` or
``--config.grids.adamw.weight_decays='(1e-3,1e-2,1e-1)'``.
"""

from ml_collections import ConfigDict

from metatrain.evaluate import default_config


def get_config() -> ConfigDict:
  config = default_config()
  config.optimizer = "runs/quickstart/optimizer"
  config.suite = "in-distribution"
  return config
