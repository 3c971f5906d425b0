"""Evaluation suites: named lists of tasks, each a registered family, its settings and a step budget.

``SUITES`` holds every suite as data. An entry is either a ``TaskSpec`` (a fixed task, trained for
200 steps, the quickstart's horizon, unless it says otherwise) or a ``Scaled`` entry: each
meta-training task (or a given base task) made ``factor`` times wider, deeper or longer. ``build``
turns a suite into the ``TaskSpec``s to run, given the meta-training tasks (``meta_training_tasks``
reads them, with the meta-training horizon as their step budget, from a learned optimizer's card),
and returns the tasks it leaves out with the reason: a TFDS dataset that is not prepared, a family
without the axis an entry scales, or, on a CPU, a costly entry (16x width, 25x horizon) of a family
other than ``CHEAP_FAMILIES`` (it would take hours on 2 CPU cores).

- ``in-distribution``: the meta-training tasks as they are (evaluation draws held-out seeds);
- ``width``: the meta-training tasks and the char transformer ``CHAR_LM`` at 1x, 4x and 16x width
  (``CHAR_LM`` is left out when a meta-training task is a char LM already);
- ``depth``: the meta-training tasks at 1x, 2x and 4x depth;
- ``horizon``: the meta-training tasks with 1x, 10x and 25x the steps;
- ``data``: MLPs on the TFDS datasets mnist, fashion_mnist and cifar10 (when prepared), student-
  teacher regression and classification, a noisy quadratic;
- ``architecture``: a CNN and a ViT on digits, the char transformer;
- ``smoke``: a digits MLP and a quadratic for 20 steps, for tests.

How a factor ``k`` scales a task:

- ``width``: every hidden size (``hidden_sizes`` of MLPs, ``width`` of CNNs, ViTs and char LMs)
  times ``k``; ``base_width`` and ``parametrization`` stay as the task had them, so a μP task stays
  μP relative to the width it was meta-trained at;
- ``depth``: ``k`` times as many hidden layers (``hidden_sizes`` repeated ``k`` times, or ``depth``
  times ``k``);
- ``horizon``: ``k`` times as many training steps.
"""

import dataclasses
from pathlib import Path
from typing import Any

import tasks
from metatrain.config import load_config
from tasks.tfds_data import DatasetNotPreparedError

AXES = ("width", "depth", "horizon")
# The setting that holds a family's width and depth; families left out have no such axis.
SIZE_SETTINGS = {
    "width": {"mlp_classifier": "hidden_sizes", "teacher": "hidden_sizes",
              "cnn_classifier": "width", "vit_classifier": "width", "char_lm": "width"},
    "depth": {"mlp_classifier": "hidden_sizes", "teacher": "hidden_sizes",
              "cnn_classifier": "depth", "vit_classifier": "depth", "char_lm": "depth"},
}
QUICKSTART_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
CHEAP_FAMILIES = ("mlp_classifier", "teacher", "quadratic")  # Costly scalings fit a CPU for these.


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """The task family ``family`` built with ``kwargs``, trained for ``num_steps`` steps.

  A scaled task is ``factor`` times the task named ``base`` along ``axis``; a fixed task has no
  axis and no base.
  """
  name: str
  family: str
  kwargs: dict[str, Any]
  num_steps: int
  axis: str = ""
  factor: int = 1
  base: str = ""

  def make_family(self) -> tasks.TaskFamily:
    return tasks.make_family(self.family, **self.kwargs)

  def as_json(self) -> dict[str, Any]:
    return json_ready(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Scaled:
  """Each meta-training task (or ``base``) scaled ``factor`` times along ``axis``; a ``costly`` one
  runs on a CPU for ``CHEAP_FAMILIES`` only."""
  axis: str
  factor: int
  base: TaskSpec | None = None
  costly: bool = False


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A task of the suite that is not run, and why."""
  name: str
  reason: str


def _fixed(name: str, family: str, num_steps: int = 200, **kwargs: Any) -> TaskSpec:
  return TaskSpec(name, family, kwargs, num_steps)


# The char transformer that the width suite scales besides the meta-training tasks.
CHAR_LM = _fixed("char_lm", "char_lm", width=32, depth=1, num_heads=2, base_width=32)

SUITES: dict[str, tuple[TaskSpec | Scaled, ...]] = {
    "in-distribution": (Scaled("", 1),),
    "width": tuple(Scaled("width", k, base, costly=k > 4) for base in (None, CHAR_LM)
                   for k in (1, 4, 16)),
    "depth": tuple(Scaled("depth", k) for k in (1, 2, 4)),
    "horizon": (Scaled("horizon", 1), Scaled("horizon", 10),
                Scaled("horizon", 25, costly=True)),
    "data": (
        _fixed("mlp-mnist", "mlp_classifier", dataset="mnist", hidden_sizes=(32,)),
        _fixed("mlp-fashion_mnist", "mlp_classifier", dataset="fashion_mnist", hidden_sizes=(32,)),
        _fixed("mlp-cifar10", "mlp_classifier", dataset="cifar10", hidden_sizes=(32,)),
        _fixed("teacher-regression", "teacher", kind="regression"),
        _fixed("teacher-classification", "teacher", kind="classification"),
        _fixed("quadratic", "quadratic"),
    ),
    "architecture": (
        _fixed("cnn-digits", "cnn_classifier", dataset="digits", width=16, depth=2),
        _fixed("vit-digits", "vit_classifier", dataset="digits", patch_size=4, width=32, depth=2),
        CHAR_LM,
    ),
    "smoke": (
        _fixed("mlp-digits", "mlp_classifier", 20, hidden_sizes=(8,), batch_size=32),
        _fixed("quadratic", "quadratic", 20, dim=4),
    ),
}


def json_ready(value: Any) -> Any:
  """``value`` with tuples as lists, as JSON stores it (so that stored and built values compare)."""
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  return value


def _as_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
  """Family settings read from JSON: lists become tuples, as the families expect."""
  return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def meta_training_tasks(card: dict[str, Any]) -> tuple[TaskSpec, ...]:
  """The tasks a learned optimizer was meta-trained on, with its horizon as step budget.

  Read from the meta-training config that ``metatrain.experiment`` records in the card (each member
  of a mixture is one task); a card without one gets the quickstart's digits MLP.
  """
  config = card.get("metadata", {}).get("config")
  if config is None:
    config = json_ready(load_config(QUICKSTART_CONFIG).to_dict())
  task, horizon = config["task"], config["estimator"]["horizon"]
  members = task["members"] if task["name"] == tasks.MIXTURE else {task["name"]: task}
  specs = []
  for name, settings in members.items():
    kwargs = {k: v for k, v in settings.items() if k not in ("name", "weight")}
    specs.append(TaskSpec(name, settings["name"], _as_kwargs(kwargs), horizon))
  return tuple(specs)


def _scaled_name(name: str, axis: str, factor: int) -> str:
  return name if factor == 1 else f"{name}-{axis}{factor}x"


def _scale(spec: TaskSpec, axis: str, factor: int) -> TaskSpec:
  """``spec`` ``factor`` times wider, deeper or longer; see the module docstring."""
  scaled = dataclasses.replace(spec, name=_scaled_name(spec.name, axis, factor), axis=axis,
                               factor=factor, base=spec.name)
  if axis == "horizon":
    return dataclasses.replace(scaled, num_steps=spec.num_steps * factor)
  if factor == 1:
    return scaled
  setting = SIZE_SETTINGS[axis][spec.family]
  value = getattr(spec.make_family(), setting)
  if setting == "hidden_sizes":
    value = tuple(h * factor for h in value) if axis == "width" else tuple(value) * factor
  else:
    value = value * factor
  return dataclasses.replace(scaled, kwargs={**spec.kwargs, setting: value})


def _missing_data(spec: TaskSpec) -> str | None:
  """Why the data ``spec`` trains on cannot be read here (a TFDS dataset not prepared), or None."""
  try:
    spec.make_family()  # Building a family checks that its data is there.
  except DatasetNotPreparedError as e:
    return str(e)
  return None


def _expand(entry: TaskSpec | Scaled, base_tasks: tuple[TaskSpec, ...], on_cpu: bool
            ) -> list[TaskSpec | Skipped]:
  """The tasks of one suite entry, or why they are left out."""
  if isinstance(entry, TaskSpec):
    return [entry]
  if entry.base and any(b.family == entry.base.family for b in base_tasks):
    name = _scaled_name(entry.base.name, entry.axis, entry.factor)
    return [Skipped(name, f"the meta-training tasks include a '{entry.base.family}' task, which "
                          "this suite scales instead")]
  out = []
  for base in (entry.base,) if entry.base else base_tasks:
    name = _scaled_name(base.name, entry.axis, entry.factor)
    if entry.costly and on_cpu and base.family not in CHEAP_FAMILIES:
      out.append(Skipped(name, f"a {entry.factor}x {entry.axis} runs on a CPU for the families "
                               f"{list(CHEAP_FAMILIES)} only (hours on 2 CPU cores for "
                               f"'{base.family}'); it runs on an accelerator"))
    elif entry.axis in SIZE_SETTINGS and base.family not in SIZE_SETTINGS[entry.axis]:
      out.append(Skipped(name, f"the family '{base.family}' has no {entry.axis}"))
    else:
      out.append(_scale(base, entry.axis, entry.factor))
  return out


def build(suite: str, base_tasks: tuple[TaskSpec, ...], on_cpu: bool,
          steps_multiplier: float = 1.0) -> tuple[list[TaskSpec], list[Skipped]]:
  """The tasks of ``suite`` (budgets times ``steps_multiplier``) and the tasks it leaves out;
  ``on_cpu`` leaves out the costly ones (see ``Scaled``).

  Raises ``ValueError`` naming the valid suites if ``suite`` is unknown.
  """
  if suite not in SUITES:
    raise ValueError(f"unknown suite '{suite}'; valid suites: {list(SUITES)}")
  specs, skipped = [], []
  for entry in SUITES[suite]:
    for item in _expand(entry, base_tasks, on_cpu):
      if isinstance(item, TaskSpec) and (reason := _missing_data(item)):
        item = Skipped(item.name, reason)
      if isinstance(item, Skipped):
        skipped.append(item)
      else:
        steps = max(1, round(item.num_steps * steps_multiplier))
        specs.append(dataclasses.replace(item, num_steps=steps))
  return specs, skipped
