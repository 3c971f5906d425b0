"""Saving and loading a learned optimizer: orbax for the arrays, a JSON card for everything else.

A saved optimizer is a directory::

    <path>/card.json   architecture name, hyperparameters, format version, user metadata
    <path>/theta/      the meta-parameters, written by orbax

The directory is written under a temporary name and renamed into place, so a reader never sees a
half-written optimizer. Nothing is loaded with pickle.
"""

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from lopt import passport, registry
from lopt.base import LearnedOptimizer, MetaParams, Params
from lopt.optax_export import as_optax

FORMAT_VERSION = 1
CARD_FILE = "card.json"
THETA_DIR = "theta"


def _checkpointer() -> ocp.StandardCheckpointer:
  """An orbax checkpointer local to this process: a learned optimizer is a small file that one
  process writes or reads, also inside a multi-process run."""
  this_process = jax.process_index()
  return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
      primary_host=this_process, active_processes={this_process}))


class CheckpointError(ValueError):
  """A saved learned optimizer is missing, incomplete or does not match what was asked for."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """No saved learned optimizer at a path (``lopt.load``) or of a name (``lopt.pretrained``): a
  ``FileNotFoundError`` and, as every ``CheckpointError``, a ``ValueError``."""


def save(path: str | os.PathLike, lopt: LearnedOptimizer, theta: MetaParams,
         metadata: dict[str, Any] | None = None) -> Path:
  """Saves ``theta`` and the description of ``lopt`` to the directory ``path`` (replaced if present).

  ``metadata`` is any JSON-serialisable provenance (meta-training config, compute, evaluation); put
  ``num_steps`` in it to give ``load`` the training length the optimizer was meta-trained for.
  """
  path = Path(path).absolute()
  path.parent.mkdir(parents=True, exist_ok=True)
  card_text = _card_text(lopt, metadata)  # Fails early on non-JSON metadata.
  staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
  try:
    with _checkpointer() as checkpointer:
      checkpointer.save(staging / THETA_DIR, jax.tree.map(np.asarray, theta))
    (staging / CARD_FILE).write_text(card_text)
    if path.exists():
      shutil.rmtree(path)
    staging.rename(path)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return path


def _card_text(lopt: LearnedOptimizer, metadata: dict[str, Any] | None) -> str:
  card = {"format_version": FORMAT_VERSION, "architecture": lopt.name,
          "hyperparameters": registry.hyperparameters(lopt), "metadata": metadata or {}}
  return json.dumps(card, indent=2, sort_keys=True)


def replace_metadata(path: str | os.PathLike, metadata: dict[str, Any]) -> None:
  """Replaces the metadata on the card of the optimizer saved at ``path`` (checked as ``load``
  checks it); its meta-parameters are left as they are. The card is replaced atomically."""
  lopt, _, _ = load_meta_params(path)
  card_path = Path(path) / CARD_FILE
  staging = card_path.with_name(f".{CARD_FILE}.tmp")
  staging.write_text(_card_text(lopt, metadata))
  staging.replace(card_path)


def read_card(path: str | os.PathLike) -> dict[str, Any]:
  """Returns the JSON card of the optimizer saved at ``path``."""
  card_path = Path(path) / CARD_FILE
  if not card_path.is_file():
    from lopt.shipped import pretrained_names  # lopt.shipped imports this module.
    raise CheckpointNotFoundError(
        f"no learned optimizer at '{path}': {card_path} does not exist (give a directory written "
        f"by lopt.save, or load a shipped one by name with lopt.pretrained: {pretrained_names()})")
  try:
    card = json.loads(card_path.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"the card {card_path} is not valid JSON (truncated?): {e}") from None
  missing = {"format_version", "architecture", "hyperparameters"} - set(card)
  if missing:
    raise CheckpointError(f"the card {card_path} lacks the field(s) {sorted(missing)}")
  if card["format_version"] != FORMAT_VERSION:
    raise CheckpointError(f"{card_path} has format version {card['format_version']}; this library "
                          f"reads version {FORMAT_VERSION}")
  return card


def load_meta_params(path: str | os.PathLike, expected_architecture: str | None = None
                     ) -> tuple[LearnedOptimizer, MetaParams, dict[str, Any]]:
  """Returns ``(lopt, theta, card)`` saved at ``path``.

  Checks the card against ``expected_architecture`` (when given) and the stored arrays against the
  shapes the architecture's hyperparameters imply; raises ``CheckpointError`` on any mismatch.
  """
  card = read_card(path)
  if expected_architecture is not None and card["architecture"] != expected_architecture:
    raise CheckpointError(f"'{path}' holds a '{card['architecture']}' learned optimizer, not the "
                          f"'{expected_architecture}' asked for")
  try:
    lopt = registry.make(card["architecture"], **card["hyperparameters"])
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"the card of '{path}' does not describe a known optimizer: {e}") from None
  expected = jax.eval_shape(lopt.init_meta_params, jax.random.key(0))
  theta_dir = Path(path).absolute() / THETA_DIR
  if not theta_dir.is_dir():
    raise CheckpointError(f"'{path}' has a card but no meta-parameters: {theta_dir} is missing")
  try:
    with _checkpointer() as checkpointer:
      theta = checkpointer.restore(theta_dir)
  except Exception as e:  # orbax raises many types for a damaged directory.
    raise CheckpointError(f"cannot read the meta-parameters in {theta_dir} (truncated or "
                          f"corrupted?): {type(e).__name__}: {e}") from None
  got_shapes = jax.tree.map(np.shape, theta)
  want_shapes = jax.tree.map(lambda a: a.shape, expected)
  if got_shapes != want_shapes:
    raise CheckpointError(f"the meta-parameters in {theta_dir} do not fit the '{lopt.name}' "
                          f"architecture of the card: shapes {got_shapes}, expected {want_shapes}")
  theta = jax.tree.map(lambda a, e: np.asarray(a, e.dtype), theta, expected)
  return lopt, theta, card


def load(path: str | os.PathLike, num_steps: int | None = None, roles: Params | None = None,
         learning_rate: float | optax.Schedule | None = None, weight_decay: float | None = None
         ) -> optax.GradientTransformationExtraArgs:
  """Loads the optimizer saved at ``path`` as an optax transformation.

  ``num_steps`` is the training length to plan for; by default the ``num_steps`` recorded in the
  card's metadata (the horizon it was meta-trained on). ``roles`` are the parameters' roles for a
  μP-aware optimizer; ``learning_rate`` and ``weight_decay`` those of an optimizer that takes them
  from outside (``"ortho_mlp"``; by default the card's): see ``as_optax``.

  The first ``init`` compares the parameters and ``num_steps`` with what the card says the
  optimizer was meta-trained and evaluated on, and warns once (``lopt.EnvelopeWarning``) when the
  training leaves it (``lopt.passport``).
  """
  lopt, theta, card = load_meta_params(path)
  if num_steps is None:
    num_steps = card["metadata"].get("num_steps")
    if num_steps is None:
      raise CheckpointError(f"the card of '{path}' records no num_steps: pass num_steps=")
  tx = as_optax(lopt, theta, num_steps, roles, learning_rate, weight_decay)
  checked = False

  def init_fn(params):
    nonlocal checked
    if not checked:
      checked = True
      clauses = passport.departures(card, params, num_steps)
      if clauses:
        warnings.warn(passport.warning(Path(path).name, clauses), passport.EnvelopeWarning,
                      stacklevel=2)
    return tx.init(params)

  return optax.GradientTransformationExtraArgs(init_fn, tx.update)
