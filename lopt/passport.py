"""A saved optimizer's generalization passport: where it was meta-trained and evaluated, and a
warning when a training leaves that envelope.

The envelope is read from the optimizer's card (``lopt.save``'s metadata, as ``metatrain`` writes
it): the longest training it was meta-trained on (``num_steps``), the widest and deepest tasks of
its meta-training distribution (``config.task``, one task or the members of a mixture) and their
families; the evidence is the card's ``evaluation`` (``metatrain.ship``): per suite and task, the
learned and tuned-AdamW final training losses.

A training is compared with it on what the parameters and ``num_steps`` show:

- *horizon*: ``num_steps`` above the meta-training horizon;
- *width*: the widest layer (the largest last dimension of a tensor of rank >= 2: the output units
  of a dense or convolution kernel) above twice the widest meta-training task's width (hidden
  size, or ``width``);
- *depth*: for a card whose tasks were all MLPs, more than twice as many weight matrices
  (hidden layers + 1) as its deepest task had;
- *convolutions*: a kernel of rank 4 when no meta-training task was a CNN.

Each departure is one clause of a single warning (``EnvelopeWarning``) that also cites the card's
result nearest to it, e.g. "you plan 50000 steps, 25x its horizon of 2000: at 25x its card
records 5.4x tuned AdamW's final training loss". A training inside the envelope stays silent, and
a card without a meta-training config is checked on its horizon alone.
"""

import math
import re
from typing import Any

import jax

WIDTH_MARGIN = 2.0  # Widths and depths up to this multiple of the meta-training ones pass silently.
DEPTH_MARGIN = 2.0
MLP_FAMILIES = ("mlp_classifier", "teacher")


class EnvelopeWarning(UserWarning):
  """A training leaves the tasks and horizons its learned optimizer was meta-trained on."""


def _members(card: dict[str, Any]) -> list[dict[str, Any]]:
  task = card.get("metadata", {}).get("config", {}).get("task")
  if not task:
    return []
  return list(task["members"].values()) if "members" in task else [task]


def _width(member: dict[str, Any]) -> int:
  return max(member.get("hidden_sizes") or [member.get("width", 0)])


def _suite_tasks(card: dict[str, Any], suite: str) -> dict[str, dict[str, float]]:
  """The card's per-task losses of ``suite`` (``metatrain.ship``), empty if it has none."""
  return (card.get("metadata", {}).get("evaluation", {}).get("suites", {}).get(suite, {})
          .get("tasks", {}))


def _card_ratios(card: dict[str, Any], axis: str) -> dict[float, float]:
  """Per scale factor of the suite ``axis`` (width, depth, horizon), the median over tasks of the
  learned optimizer's final training loss divided by tuned AdamW's, as the card records them."""
  ratios: dict[float, list[float]] = {}
  for name, losses in _suite_tasks(card, axis).items():
    match = re.search(rf"-{axis}(\d+(?:\.\d+)?)x$", name)
    learned, adamw = losses.get("learned_train_loss"), losses.get("adamw_train_loss")
    if match and learned is not None and adamw:
      ratios.setdefault(float(match.group(1)), []).append(learned / adamw)
  return {k: sorted(v)[len(v) // 2] for k, v in ratios.items()}


def _evidence(card: dict[str, Any], axis: str, factor: float) -> str:
  ratios = _card_ratios(card, axis)
  if not ratios:
    return f"its card has no '{axis}' evaluation there"
  nearest = min(ratios, key=lambda k: abs(math.log(k / factor)))
  return (f"at {nearest:g}x its card records {ratios[nearest]:.2g}x tuned AdamW's final training "
          "loss")


def departures(card: dict[str, Any], params: Any, num_steps: int | None) -> list[str]:
  """The ways a training of ``params`` for ``num_steps`` steps leaves ``card``'s envelope (see the
  module docstring), one clause each; empty inside it."""
  found = []
  horizon = card.get("metadata", {}).get("num_steps")
  if horizon and isinstance(num_steps, int) and num_steps > horizon:
    factor = num_steps / horizon
    found.append(f"you plan {num_steps} steps, {factor:.3g}x its horizon of {horizon}: "
                 f"{_evidence(card, 'horizon', factor)}")
  members = _members(card)
  if not members:
    return found
  shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(params)
            if len(getattr(leaf, "shape", ())) >= 2]
  widest = max((_width(m) for m in members), default=0)
  width = max((shape[-1] for shape in shapes), default=0)
  if widest and width > WIDTH_MARGIN * widest:
    factor = width / widest
    found.append(f"your widest layer has {width} units, {factor:.3g}x its widest meta-training "
                 f"task's {widest}: {_evidence(card, 'width', factor)}")
  if all(m.get("name") in MLP_FAMILIES for m in members):
    deepest = max(len(m.get("hidden_sizes", ())) + 1 for m in members)
    if len(shapes) > DEPTH_MARGIN * deepest:
      factor = len(shapes) / deepest
      found.append(f"your model has {len(shapes)} weight matrices, {factor:.3g}x the "
                   f"{deepest} of its deepest meta-training task: "
                   f"{_evidence(card, 'depth', factor)}")
  if any(len(shape) == 4 for shape in shapes) and not any(
      m.get("name") == "cnn_classifier" for m in members):
    cnn = _suite_tasks(card, "architecture").get("cnn-digits", {})
    result = (f"on a small CNN its card records "
              f"{cnn['learned_train_loss'] / cnn['adamw_train_loss']:.2g}x tuned AdamW's final "
              "training loss" if cnn.get("adamw_train_loss") else
              "its card has no CNN evaluation")
    found.append(f"your model has convolution kernels and it was meta-trained on no CNN: {result}")
  return found


def warning(name: str, clauses: list[str]) -> str:
  """The one warning sentence for ``clauses`` of optimizer ``name``."""
  return (f"the learned optimizer '{name}' is used outside what it was meta-trained and evaluated "
          f"on: {'; '.join(clauses)}. Expect it to do worse than there; tuned AdamW may be the "
          "safer choice.")
