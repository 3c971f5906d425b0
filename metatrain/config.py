"""Experiment configs: a Python file in ``configs/`` with ``get_config()``, plus command-line overrides.

Overrides have the ml_collections form ``--config.outer.steps=50``. Every problem (a missing file, an
unknown key, a value of the wrong type, an unknown task, optimizer or estimator name, an impossible
setting) raises ``ConfigError`` with one message that names the bad value and the valid choices.
"""

import ast
import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

from ml_collections import ConfigDict

import lopt
import tasks
from lopt import shipped
from lopt.base import MetaParams
from lopt.checkpoint import CARD_FILE, load_meta_params
from metatrain.es import SHAPINGS
from metatrain.estimators import ESTIMATORS
from metatrain.inner_training import HORIZON_SAMPLINGS, META_LOSSES
from metatrain.meta_optimizer import CLIPS, SCHEDULES

OVERRIDE_PREFIX = "--config."


class ConfigError(ValueError):
  """A config file or override that cannot be used."""


def load_config(path: str | os.PathLike) -> ConfigDict:
  """Imports the config file and returns its ``get_config()``.

  ``path`` may end in ``:<argument>`` (``configs/width_mixture.py:sp``), as with ml_collections'
  config flags: the argument string is passed to ``get_config``.
  """
  path, argument = str(path), None
  if not os.path.isfile(path) and ":" in path:
    path, argument = path.rsplit(":", 1)
  if not os.path.isfile(path):
    raise ConfigError(f"config file '{path}' does not exist")
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file '{path}' defines no get_config()")
  if argument is None:
    return module.get_config()
  try:
    return module.get_config(argument)
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config file '{path}' cannot take the argument '{argument}': {e}") from None


def parse_known_args(parser, argv: list[str] | None) -> tuple[Any, list[str]]:
  """``parser``'s arguments and the ``--config.<key>=<value>`` overrides of ``argv``; any other
  argument stops with the parser's usage error."""
  args, rest = parser.parse_known_args(argv)
  unknown = [a for a in rest if not a.startswith(OVERRIDE_PREFIX)]
  if unknown:
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  return args, rest


def _parse_value(text: str, current: Any, key: str) -> Any:
  """Reads ``text`` as a value of the type of ``current`` (the config's value for ``key``)."""
  def wrong_type():
    return ConfigError(f"config.{key} expects a {type(current).__name__} (like {current!r}), "
                       f"got '{text}'")
  if isinstance(current, bool):
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
      raise wrong_type()
    return lowered in ("true", "1")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise wrong_type() from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, tuple) and isinstance(value, (list, int, float)):
    value = tuple(value) if isinstance(value, list) else (value,)
  if type(value) is not type(current):
    raise wrong_type()
  return value


def apply_overrides(config: ConfigDict, overrides: list[str]) -> ConfigDict:
  """Applies ``--config.a.b=value`` overrides; unknown keys and wrong types raise ``ConfigError``."""
  for override in overrides:
    if not override.startswith(OVERRIDE_PREFIX) or "=" not in override:
      raise ConfigError(f"cannot read the override '{override}'; write --config.<key>=<value>")
    key, text = override[len(OVERRIDE_PREFIX):].split("=", 1)
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts):
      if not isinstance(node, ConfigDict) or part not in node:
        where = ".".join(["config"] + parts[:depth])
        valid = sorted(node.keys()) if isinstance(node, ConfigDict) else "none, it is not a group"
        raise ConfigError(f"unknown config key 'config.{key}': {where} has no '{part}'; "
                          f"valid keys: {valid}")
      if depth < len(parts) - 1:
        node = node[part]
    leaf = parts[-1]
    if isinstance(node[leaf], ConfigDict):
      raise ConfigError(f"config.{key} is a group; set one of its keys: {sorted(node[leaf].keys())}")
    node[leaf] = _parse_value(text, node[leaf], key)
  return config


def _build(registry: dict[str, type], make, group: ConfigDict, what: str,
           extra_names: list[str] = ()):
  """Builds ``make(name, **rest of group)`` after checking the name and keyword arguments."""
  settings = dict(group)
  name = settings.pop("name", None)
  if name not in registry:
    raise ConfigError(f"unknown {what} '{name}'; valid choices: "
                      f"{sorted([*registry, *extra_names])}")
  fields = {f.name for f in dataclasses.fields(registry[name])}
  unknown = sorted(set(settings) - fields)
  if unknown:
    raise ConfigError(f"unknown setting(s) {unknown} for {what} '{name}'; valid: {sorted(fields)}")
  try:
    return make(name, **settings)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"bad settings for {what} '{name}': {e}") from None


def build_task_family(config: ConfigDict) -> tasks.TaskFamily | tasks.Mixture:
  """The task family of ``config.task``, or a ``tasks.Mixture`` when its name is ``mixture``."""
  if config.task.get("name") != tasks.MIXTURE:
    return _build(tasks.FAMILIES, tasks.make_family, config.task, "task family",
                  extra_names=[tasks.MIXTURE])
  _require(set(config.task.keys()) == {"name", "members"} and config.task.members,
           "a mixture task group holds 'name' and 'members' ({member: {name, weight, settings}}), "
           f"got keys {sorted(config.task.keys())}")
  families, weights = [], []
  for member, settings in config.task.members.items():
    _require(isinstance(settings, ConfigDict) and "weight" in settings,
             f"mixture member '{member}' needs a group with a 'weight' and a family 'name'")
    group = ConfigDict({k: v for k, v in settings.items() if k != "weight"})
    families.append(_build(tasks.FAMILIES, tasks.make_family, group,
                           f"task family of mixture member '{member}'"))
    weights.append(float(settings.weight))
  try:
    return tasks.Mixture(tuple(families), tuple(weights), tuple(config.task.members.keys()))
  except ValueError as e:
    raise ConfigError(str(e)) from None


def population_slice_sizes(config: ConfigDict) -> tuple[int, ...]:
  """How many tasks of the population each mixture member runs (one slice without a mixture)."""
  family, population = build_task_family(config), config.estimator.population
  if isinstance(family, tasks.Mixture):
    try:
      return family.slice_sizes(population)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  return (population,)


def family_members(family) -> list[tuple[str, tasks.TaskFamily]]:
  """``[(name, family)]`` for each member of a mixture, or ``[(family.name, family)]``."""
  if isinstance(family, tasks.Mixture):
    return list(zip(family.names, family.families))
  return [(family.name, family)]


def build_lopt(config: ConfigDict) -> lopt.LearnedOptimizer:
  return _build(lopt.ARCHITECTURES, lopt.make, config.lopt, "learned optimizer")


def resolve_optimizer(name: str) -> Path:
  """The directory of the learned optimizer ``name``: a shipped name (``lopt.pretrained_names``)
  or a directory written by ``lopt.save``."""
  names = lopt.pretrained_names()
  if name in names:
    return shipped.CHECKPOINTS / name
  if not (Path(name) / CARD_FILE).is_file():
    raise ConfigError(f"no learned optimizer at '{name}': give a directory written by lopt.save "
                      f"(it holds a {CARD_FILE}) or the name of a shipped optimizer, one of "
                      f"{names}")
  return Path(name)


def load_start_theta(config: ConfigDict) -> MetaParams | None:
  """The theta that ``config.outer.init_from`` names (a shipped name or a ``lopt.save``
  directory), to start meta-training from; ``None`` when it is empty (theta starts from a fresh
  draw). The saved optimizer must be the one ``config.lopt`` builds, hyperparameters included."""
  if not config.outer.init_from:
    return None
  path = resolve_optimizer(config.outer.init_from)
  saved, theta, _ = load_meta_params(path)
  wanted = build_lopt(config)
  if saved != wanted:
    raise ConfigError(f"config.outer.init_from: '{path}' holds {saved}, but config.lopt builds "
                      f"{wanted}; set config.lopt to the saved optimizer's architecture and "
                      f"hyperparameters")
  return theta


def _require(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def validate(config: ConfigDict) -> None:
  """Checks every name and setting of ``config``; raises ``ConfigError`` on the first problem."""
  for group in ("task", "lopt", "estimator", "outer", "eval", "distributed", "wandb"):
    _require(group in config, f"the config has no '{group}' group")
  build_task_family(config)
  build_lopt(config)
  est = config.estimator
  _require(est.name in ESTIMATORS,
           f"unknown estimator '{est.name}'; valid choices: {sorted(ESTIMATORS)}")
  for key in ("population", "unroll_length", "horizon"):
    _require(est[key] >= 1, f"config.estimator.{key} must be >= 1, got {est[key]}")
  _require(est.unroll_length <= est.horizon,
           f"config.estimator.unroll_length ({est.unroll_length}) is longer than the horizon "
           f"({est.horizon})")
  _require(est.horizon % est.unroll_length == 0,
           f"config.estimator.horizon ({est.horizon}) must be a multiple of unroll_length "
           f"({est.unroll_length})")
  _require(est.sigma > 0, f"config.estimator.sigma must be > 0, got {est.sigma}")
  population_slice_sizes(config)
  _require(est.min_horizon == 0 or est.unroll_length <= est.min_horizon <= est.horizon,
           f"config.estimator.min_horizon ({est.min_horizon}) must be 0 (every training lasts "
           f"the horizon) or between unroll_length ({est.unroll_length}) and horizon "
           f"({est.horizon})")
  _require(est.name != "full_es" or est.min_horizon in (0, est.horizon),
           "the full_es estimator trains whole horizons of one length: set "
           "config.estimator.min_horizon=0")
  _require(est.normalization in tasks.NORMALIZATIONS,
           f"unknown loss normalization '{est.normalization}'; valid choices: "
           f"{list(tasks.NORMALIZATIONS)}")
  _require(est.loss_weight_power >= 0,
           f"config.estimator.loss_weight_power must be >= 0, got {est.loss_weight_power}")
  _require(est.meta_loss in META_LOSSES,
           f"unknown meta_loss '{est.meta_loss}'; valid choices: {list(META_LOSSES)}")
  _require(est.shaping in SHAPINGS,
           f"unknown shaping '{est.shaping}'; valid choices: {list(SHAPINGS)}")
  _require(est.name != "tbptt" or est.shaping == "none",
           f"config.estimator.shaping ('{est.shaping}') shapes the ES estimators' loss "
           "differences; the tbptt estimator takes none")
  _require(est.horizon_sampling in HORIZON_SAMPLINGS,
           f"unknown horizon_sampling '{est.horizon_sampling}'; valid choices: "
           f"{list(HORIZON_SAMPLINGS)}")
  _validate_outer(config.outer)
  _require(config.checkpoint_every >= 1,
           f"config.checkpoint_every must be >= 1, got {config.checkpoint_every}")
  _require(config.eval.num_seeds >= 1, f"config.eval.num_seeds must be >= 1")
  _require(config.eval.validate_every >= 0,
           f"config.eval.validate_every must be >= 0 (0: export the last theta), got "
           f"{config.eval.validate_every}")
  _require(config.eval.validation_seeds >= 1,
           f"config.eval.validation_seeds must be >= 1, got {config.eval.validation_seeds}")
  unknown = [name for name in config.eval.baselines if name not in lopt.BASELINES]
  _require(len(config.eval.baselines) >= 1 and not unknown,
           f"config.eval.baselines must name at least one baseline, and {unknown} are not "
           f"baselines; valid choices: {list(lopt.BASELINES)}")
  dist = config.distributed
  _require(dist.num_processes >= 1 and 0 <= dist.process_id < dist.num_processes,
           f"config.distributed.process_id ({dist.process_id}) must be in [0, num_processes = "
           f"{dist.num_processes})")
  _require(dist.num_processes == 1 or ":" in dist.coordinator_address,
           "config.distributed.coordinator_address must be host:port for a multi-process run")
  _require(bool(config.name) and "/" not in config.name and not config.name.startswith("."),
           f"config.name must be a plain directory name, got '{config.name}'")


def _validate_outer(outer: ConfigDict) -> None:
  """Checks the meta-optimizer's settings (``metatrain.meta_optimizer``)."""
  _require(outer.steps >= 1, f"config.outer.steps must be >= 1, got {outer.steps}")
  _require(outer.max_seconds >= 0, "config.outer.max_seconds must be >= 0 (0: no time limit), "
           f"got {outer.max_seconds}")
  _require(outer.schedule in SCHEDULES,
           f"unknown schedule '{outer.schedule}'; valid choices: {list(SCHEDULES)}")
  _require(outer.schedule != "warmup_cosine" or 0 <= outer.warmup_steps < outer.steps,
           f"config.outer.warmup_steps ({outer.warmup_steps}) must be in [0, steps = "
           f"{outer.steps}) for the warmup_cosine schedule")
  _require(outer.final_learning_rate >= 0,
           f"config.outer.final_learning_rate must be >= 0, got {outer.final_learning_rate}")
  _require(outer.weight_decay >= 0,
           f"config.outer.weight_decay must be >= 0 (0: Adam), got {outer.weight_decay}")
  _require(outer.clip in CLIPS, f"unknown clip '{outer.clip}'; valid choices: {list(CLIPS)}")
