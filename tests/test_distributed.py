"""The population sharded over 8 devices, and over 2 processes, gives the theta of 1 device."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import lopt
from conftest import QUICKSTART, REPO, TINY_OVERRIDES
from metatrain.config import apply_overrides, load_config
from metatrain.train import meta_train

# Validated once, at the last step, so that the exported theta (the best validated) is the last
# one on every device count, and the validation's state goes through the checkpoints.
OVERRIDES = TINY_OVERRIDES + ["--config.estimator.population=8", "--config.outer.steps=4",
                              "--config.eval.num_seeds=1", "--config.eval.validate_every=4"]


def _command(workdir, *extra):
  return [sys.executable, "-m", "metatrain", "--config", str(QUICKSTART), "--workdir",
          str(workdir), "--no-progress", *OVERRIDES, *extra]


def _env(devices: int):
  return {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _assert_close(got, expected):
  """Equal up to float summation order (the cross-device reductions add in another order)."""
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5), got, expected)


@pytest.fixture(scope="module")
def one_device_theta(tmp_path_factory):
  assert jax.device_count() == 1
  config = apply_overrides(load_config(QUICKSTART), OVERRIDES)
  return meta_train(config, tmp_path_factory.mktemp("one"), show_progress=False)["theta"]


def test_eight_devices_give_the_theta_of_one(tmp_path, one_device_theta):
  subprocess.run(_command(tmp_path), cwd=REPO, env=_env(8), check=True, capture_output=True)
  _assert_close(lopt.load_meta_params(tmp_path / "tiny" / "optimizer")[1], one_device_theta)


def test_population_not_divisible_by_the_devices_is_refused(tmp_path):
  refused = subprocess.run(_command(tmp_path, "--config.estimator.population=12"), cwd=REPO,
                           env=_env(8), capture_output=True, text=True)
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines() == [
      "error: the population (12) must be a multiple of the number of devices (8) it is sharded "
      "over"]
  assert not (tmp_path / "tiny").exists()


def test_two_processes_give_the_theta_of_one_device(tmp_path, one_device_theta):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  # A time limit never reached: every step the processes agree, through process 0, to go on.
  processes = [subprocess.Popen(
      _command(tmp_path, "--config.distributed.num_processes=2",
               f"--config.distributed.process_id={i}",
               f"--config.distributed.coordinator_address=127.0.0.1:{port}",
               "--config.outer.max_seconds=1e6"),
      cwd=REPO, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs
  _assert_close(lopt.load_meta_params(tmp_path / "tiny" / "optimizer")[1], one_device_theta)


def test_a_dataset_that_several_mixture_members_read_is_copied_to_the_devices_once():
  from jax.sharding import Mesh
  import tasks
  from metatrain.sharding import put_replicated
  mixture = tasks.make_mixture({
      "mlp": {"name": "mlp_classifier", "weight": 1.0, "dataset": "digits"},
      "cnn": {"name": "cnn_classifier", "weight": 1.0, "dataset": "digits"},
      "teacher": {"name": "teacher", "weight": 1.0}})
  mlp_data, cnn_data, _ = put_replicated(mixture.data(), Mesh(np.array(jax.devices()), ("d",)))
  assert mlp_data["train"][0] is cnn_data["train"][0]
  np.testing.assert_array_equal(mlp_data["train"][0], mixture.data()[0]["train"][0])
