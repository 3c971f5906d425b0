"""Pretrained learned optimizers shipped with the project, by name.

Each is a directory of the repository's top-level ``checkpoints/`` folder written by ``lopt.save``
(a ``card.json`` and its meta-parameters); its name is the directory's name. ``pyproject.toml``
maps that folder onto the package ``lopt.shipped_checkpoints``, found with ``importlib.resources``:
in an installed wheel it is package data, in an editable install the checkout's folder itself.

    tx = lopt.pretrained("<name>", num_steps=1000)     # what lopt.load returns
    lopt.pretrained_names()                            # what ships

``directory=`` reads another folder laid out the same way (a user's own collection, or a test's).
"""

import importlib.resources
import os
from pathlib import Path

import optax

from lopt.base import Params
from lopt.checkpoint import CARD_FILE, CheckpointNotFoundError, load

# A plain directory: pip unpacks a wheel, and orbax reads the meta-parameters from files.
CHECKPOINTS = Path(importlib.resources.files("lopt.shipped_checkpoints"))


def pretrained_names(directory: str | os.PathLike | None = None) -> list[str]:
  """The names of the optimizers in ``directory`` (default ``CHECKPOINTS``), sorted."""
  directory = Path(CHECKPOINTS if directory is None else directory)
  if not directory.is_dir():
    return []
  return sorted(entry.name for entry in directory.iterdir() if (entry / CARD_FILE).is_file())


def pretrained(name: str, num_steps: int | None = None, roles: Params | None = None,
               directory: str | os.PathLike | None = None,
               learning_rate: float | optax.Schedule | None = None,
               weight_decay: float | None = None) -> optax.GradientTransformationExtraArgs:
  """The optimizer ``name`` of ``directory`` (default ``CHECKPOINTS``) as ``lopt.load`` gives it
  (``learning_rate`` and ``weight_decay``: for optimizers that take them, see ``lopt.as_optax``).

  Raises ``CheckpointNotFoundError`` (a ``FileNotFoundError``, as ``lopt.load`` raises for a missing
  directory) listing the valid names when ``name`` is not one of them, and ``lopt.CheckpointError``
  (a ``ValueError``) as ``lopt.load`` does for an optimizer that does not load.
  """
  directory = Path(CHECKPOINTS if directory is None else directory)
  names = pretrained_names(directory)
  if name not in names:
    shipped = f"valid names: {names}" if names else "none ship yet"
    raise CheckpointNotFoundError(f"unknown pretrained learned optimizer '{name}' in {directory}; "
                                  f"{shipped}")
  return load(directory / name, num_steps, roles, learning_rate, weight_decay)
