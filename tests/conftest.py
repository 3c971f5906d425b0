"""Shared test helpers: a tiny meta-training config that runs in seconds on a CPU."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")

# Many tests compile the same tiny programs (every meta_train call builds its outer step anew), in
# this process, in pytest-xdist's workers and in the subprocesses that tests start. JAX's
# persistent compilation cache, in a directory of this test session only, compiles each once. The
# workers inherit the directory from the controlling process, which made it and removes it.
_OWN_COMPILATION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_COMPILATION_CACHE = tempfile.mkdtemp(prefix="jax-compilation-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_COMPILATION_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = f"{REPO / 'configs' / 'quickstart.py'}:mlp"  # The small-MLP variant.

TINY_OVERRIDES = ["--config.task.hidden_sizes=(16,)", "--config.task.batch_size=32",
                  "--config.lopt.hidden_size=8", "--config.estimator.population=4",
                  "--config.estimator.unroll_length=5", "--config.estimator.horizon=20",
                  "--config.outer.steps=6", "--config.checkpoint_every=3",
                  "--config.eval.num_seeds=2", "--config.eval.baselines=('adamw',)",
                  "--config.wandb.enabled=false", "--config.name=tiny"]


@pytest.fixture
def tiny_config():
  """Returns a function that builds the tiny config with extra ``--config.k=v`` overrides."""
  from metatrain.config import apply_overrides, load_config, validate

  def make(*extra: str):
    config = apply_overrides(load_config(QUICKSTART), TINY_OVERRIDES + list(extra))
    validate(config)
    return config

  return make


def pytest_sessionfinish(session, exitstatus):
  if _OWN_COMPILATION_CACHE:
    shutil.rmtree(_OWN_COMPILATION_CACHE, ignore_errors=True)
