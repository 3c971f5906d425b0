"""Experiment configs: a Python file in ``configs/`` with ``get_config()``, plus command-line overrides.

Overrides have the ml_collections form ``--config.outer.steps=50``. Every problem (a missing file, an
unknown key, a value of the wrong type, an unknown task, optimizer or estimator name, an impossible
setting) raises ``ConfigError`` with one message that names the bad value and the valid choices.
"""

import ast
import dataclasses
import importlib.util
import os
from typing import Any

from ml_collections import ConfigDict

import lopt
import tasks
from metatrain.estimators import ESTIMATORS
from metatrain.inner_training import META_LOSSES

OVERRIDE_PREFIX = "--config."


class ConfigError(ValueError):
  """A config file or override that cannot be used."""


def load_config(path: str | os.PathLike) -> ConfigDict:
  """Imports ``path`` and returns its ``get_config()``."""
  if not os.path.isfile(path):
    raise ConfigError(f"config file '{path}' does not exist")
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file '{path}' defines no get_config()")
  return module.get_config()


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


def _build(registry: dict[str, type], make, group: ConfigDict, what: str):
  """Builds ``make(name, **rest of group)`` after checking the name and keyword arguments."""
  settings = dict(group)
  name = settings.pop("name", None)
  if name not in registry:
    raise ConfigError(f"unknown {what} '{name}'; valid choices: {sorted(registry)}")
  fields = {f.name for f in dataclasses.fields(registry[name])}
  unknown = sorted(set(settings) - fields)
  if unknown:
    raise ConfigError(f"unknown setting(s) {unknown} for {what} '{name}'; valid: {sorted(fields)}")
  try:
    return make(name, **settings)
  except (ValueError, TypeError) as e:
    raise ConfigError(f"bad settings for {what} '{name}': {e}") from None


def build_task_family(config: ConfigDict) -> tasks.TaskFamily:
  return _build(tasks.FAMILIES, tasks.make_family, config.task, "task family")


def build_lopt(config: ConfigDict) -> lopt.LearnedOptimizer:
  return _build(lopt.ARCHITECTURES, lopt.make, config.lopt, "learned optimizer")


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
  _require(est.meta_loss in META_LOSSES,
           f"unknown meta_loss '{est.meta_loss}'; valid choices: {list(META_LOSSES)}")
  _require(config.outer.steps >= 1, f"config.outer.steps must be >= 1, got {config.outer.steps}")
  _require(config.checkpoint_every >= 1,
           f"config.checkpoint_every must be >= 1, got {config.checkpoint_every}")
  _require(config.eval.num_seeds >= 1, f"config.eval.num_seeds must be >= 1")
  _require(len(config.eval.adam_learning_rates) >= 1 and min(config.eval.adam_learning_rates) > 0,
           "config.eval.adam_learning_rates must be a non-empty tuple of positive learning rates")
  dist = config.distributed
  _require(dist.num_processes >= 1 and 0 <= dist.process_id < dist.num_processes,
           f"config.distributed.process_id ({dist.process_id}) must be in [0, num_processes = "
           f"{dist.num_processes})")
  _require(dist.num_processes == 1 or ":" in dist.coordinator_address,
           "config.distributed.coordinator_address must be host:port for a multi-process run")
  _require(bool(config.name) and "/" not in config.name and not config.name.startswith("."),
           f"config.name must be a plain directory name, got '{config.name}'")
