"""The package as a user installs it: a wheel built from the checkout, installed into a fresh
virtual environment and run from a folder outside the checkout, loads the shipped optimizers by name
and trains with them, and its console scripts run.

The environment reuses this one's installed dependencies (a ``.pth`` file puts their folder on its
``sys.path``, after its own site-packages), so nothing is downloaded: the wheel is built with the
setuptools of this environment and installed with ``--no-deps --no-index``.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

# The console scripts (python -m metatrain, metatrain.evaluate, metatrain.ship, metatrain.compare)
# and an option of each.
SCRIPTS = {"lo-metatrain": "--config", "lo-evaluate": "--suite", "lo-ship": "--name",
           "lo-compare": "--names"}
TRAINED = "splo-digits-mlp"
# Where this environment's dependencies are: the test environment's .pth file names these folders.
DEPENDENCIES = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}

# Run by the environment's interpreter: where lopt and the shipped optimizers come from, what ships,
# and the training losses of a shipped optimizer on a small least-squares problem in plain optax.
USER_SCRIPT = f"""
import json, sys
import jax, jax.numpy as jnp, optax
import lopt

tx = lopt.pretrained("{TRAINED}", num_steps=30)
x = jax.random.normal(jax.random.key(0), (64, 8))
y = jnp.sin(x @ jnp.arange(8.0) / 8)[:, None]
loss_fn = lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

@jax.jit
def step(params, opt_state):
  loss, grads = jax.value_and_grad(loss_fn)(params)
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)
  return optax.apply_updates(params, updates), opt_state, loss

params = {{"w": jnp.zeros((8, 1)), "b": jnp.zeros(1)}}
opt_state, losses = tx.init(params), []
for _ in range(30):
  params, opt_state, loss = step(params, opt_state)
  losses.append(float(loss))
print(json.dumps({{"sys_path": sys.path, "lopt": lopt.__file__, "names": lopt.pretrained_names(),
                  "checkpoints": str(lopt.shipped.CHECKPOINTS), "losses": losses}}))
"""


def _files(directory: Path) -> set[Path]:
  """The files under ``directory`` (relative), less bytecode caches and hidden ones."""
  return {path.relative_to(directory) for path in directory.rglob("*") if path.is_file()
          and not any(part.startswith(".") or part == "__pycache__"
                      for part in path.relative_to(directory).parts)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
  """``(environment, its variables, a folder outside the checkout)`` with the wheel installed."""
  tmp = tmp_path_factory.mktemp("packaging")
  # A copy to build from: setuptools writes build/ and *.egg-info/ next to the sources.
  source = tmp / "source"
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
      ".*", "__pycache__", "build", "dist", "*.egg-info", "runs", "wandb", "docs"))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                  "--no-build-isolation", "--no-index", "--wheel-dir", tmp / "dist", source],
                 check=True)
  wheel, = (tmp / "dist").glob("*.whl")

  env = tmp / "env"
  venv.EnvBuilder(with_pip=False).create(env)
  python = env / "bin" / "python"
  site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path("
                                  "'purelib'))"], check=True, capture_output=True, text=True)
  (Path(site_packages.stdout.strip()) / "dependencies.pth").write_text("\n".join(DEPENDENCIES))
  # --ignore-installed: the checkout's editable install is visible there through the .pth file.
  subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
                  "--no-deps", "--no-index", "--ignore-installed", wheel], check=True)

  variables = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  elsewhere = tmp / "elsewhere"
  elsewhere.mkdir()
  return env, variables, elsewhere


def test_the_installed_wheel_ships_the_optimizers_and_trains_with_one(installed):
  env, variables, elsewhere = installed
  run = subprocess.run([env / "bin" / "python", "-c", USER_SCRIPT], cwd=elsewhere, env=variables,
                       check=True, capture_output=True, text=True)
  seen = json.loads(run.stdout.splitlines()[-1])

  # lopt and its optimizers come from the environment; the checkout is not on sys.path (only the
  # dependencies' folder, which may lie inside it).
  assert Path(seen["lopt"]).is_relative_to(env)
  assert [p for p in seen["sys_path"] if Path(p or elsewhere).resolve().is_relative_to(REPO)
          and p not in DEPENDENCIES] == []
  checkpoints = Path(seen["checkpoints"])
  assert checkpoints.is_relative_to(env)

  # Every module of the checkout's packages, subpackages included, is installed.
  site_packages = Path(seen["lopt"]).parents[1]
  modules = lambda root: {p for p in _files(root) if p.suffix == ".py"}
  for package in ("lopt", "tasks", "metatrain"):
    assert modules(REPO / package) <= modules(site_packages / package)

  # All of checkpoints/ travels: every optimizer with all its files, and the folder's README.
  shipped = sorted(p.name for p in (REPO / "checkpoints").iterdir() if (p / "card.json").is_file())
  assert seen["names"] == shipped and TRAINED in shipped
  assert _files(checkpoints) == _files(REPO / "checkpoints")

  losses = np.array(seen["losses"])
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_the_console_scripts_are_installed_and_run(installed):
  env, variables, elsewhere = installed
  for script, option in SCRIPTS.items():
    run = subprocess.run([env / "bin" / script, "--help"], cwd=elsewhere, env=variables,
                         check=True, capture_output=True, text=True)
    assert run.stdout.startswith("usage: ") and option in run.stdout
