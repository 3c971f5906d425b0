"""The command line as a user meets it: clear errors for bad input, and resuming after kill -9."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lopt
import tasks
from conftest import QUICKSTART, REPO, TINY_OVERRIDES
from metatrain import evaluate, suites
from metatrain.__main__ import main
from metatrain.config import build_task_family
from metatrain.metrics_log import read_metrics


@pytest.mark.parametrize("override, message", [
    ("--config.outer.stepz=5", "unknown config key 'config.outer.stepz': config.outer has no "
                               "'stepz'; valid keys: ['clip', 'final_learning_rate', 'init_from', "
                               "'learning_rate', 'max_grad_norm', 'max_seconds', 'schedule', "
                               "'steps', 'warmup_steps', 'weight_decay']"),
    ("--config.outer.steps=many", "config.outer.steps expects a int (like 6), got 'many'"),
    ("--config.task.name=imagenet", "unknown task family 'imagenet'; valid choices: "
                                    "['char_lm', 'cnn_classifier', 'mixture', 'mlp_classifier', "
                                    "'quadratic', 'teacher', 'vit_classifier']"),
    ("--config.estimator.normalization=zscore", "unknown loss normalization 'zscore'; valid "
                                                "choices: ['none', 'relative', 'log_relative']"),
    ("--config.estimator.min_horizon=500", "config.estimator.min_horizon (500) must be 0"),
    ("--config.task.dataset=imagenet",
     f"unknown dataset 'imagenet'; valid choices: {list(tasks.DATASETS)}"),
    ("--config.lopt.name=velo",
     f"unknown learned optimizer 'velo'; valid choices: {sorted(lopt.ARCHITECTURES)}"),
    ("--config.estimator.name=es", "unknown estimator 'es'; valid choices: "
                                   "['full_es', 'nres', 'pes', 'tbptt', 'truncated_es']"),
    ("--config.estimator.shaping=rank", "unknown shaping 'rank'; valid choices: "
                                        "['none', 'sign', 'centered_rank']"),
    ("--config.estimator.horizon_sampling=log", "unknown horizon_sampling 'log'; valid choices: "
                                                "['uniform', 'log_uniform']"),
    ("--config.estimator.meta_loss=test", "unknown meta_loss 'test'; valid choices: "
                                          "['train', 'held_out']"),
    ("--config.estimator.unroll_length=50", "unroll_length (50) is longer than the horizon (20)"),
    ("--config.estimator.loss_weight_power=-1",
     "config.estimator.loss_weight_power must be >= 0, got -1"),
    ("--config.outer.max_seconds=-5", "config.outer.max_seconds must be >= 0 (0: no time limit), "
                                      "got -5"),
    ("--config.task.param_scale_range=(10.0,0.1)", "bad settings for task family 'mlp_classifier': "
                                                   "param_scale_range must be (low, high) with "
                                                   "0 < low <= high"),
])
def test_bad_input_gives_one_clear_error_and_writes_nothing(override, message, tmp_path, capsys):
  code = main(["--config", str(QUICKSTART), "--workdir", str(tmp_path), *TINY_OVERRIDES, override])
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith("error: ") and message in err and "Traceback" not in err
  assert list(tmp_path.iterdir()) == []


def test_a_param_scale_range_set_on_the_command_line_reaches_training_and_evaluation(tiny_config):
  config = tiny_config("--config.task.param_scale_range=(0.1,10.0)")
  family = build_task_family(config)
  assert family.param_scale_range == (0.1, 10.0)
  card = {"metadata": {"config": suites.json_ready(config.to_dict())}}
  (spec,) = suites.meta_training_tasks(card)  # What the in-distribution evaluation trains.
  assert spec.make_family() == family
  keys = evaluate.eval_keys(0, 3)
  runs = evaluate.train_population(family, lopt.make_baseline("adam", 1e-2, 10), keys, 10)
  assert np.all(np.isfinite(runs["losses"]))


def test_missing_config_file_is_a_clear_error(tmp_path, capsys):
  assert main(["--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path)]) == 2
  assert f"config file '{tmp_path / 'nope.py'}' does not exist" in capsys.readouterr().err


def _command(workdir, *extra):
  return [sys.executable, "-m", "metatrain", "--config", str(QUICKSTART), "--workdir",
          str(workdir), "--no-progress", *TINY_OVERRIDES, *extra]


def test_cli_exits_nonzero_without_traceback(tmp_path):
  result = subprocess.run(_command(tmp_path, "--config.lopt.hidden_size=big"), cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: config.lopt.hidden_size expects a int (like 8), got 'big'"]


def test_killed_run_resumes_from_its_checkpoint_with_identical_metrics(tmp_path):
  """kill -9 in the middle of meta-training, start the same command again, compare."""
  long_run = ("--config.outer.steps=400", "--config.checkpoint_every=2")
  env = {**os.environ, "WANDB_MODE": "disabled"}
  killed = subprocess.Popen(_command(tmp_path / "killed", *long_run), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoints = tmp_path / "killed" / "tiny" / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and killed.poll() is None:
    if checkpoints.is_dir() and any(p.name.isdigit() and int(p.name) >= 4
                                    for p in checkpoints.iterdir()):
      break
    time.sleep(0.05)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  steps_before = len(read_metrics(tmp_path / "killed" / "tiny"))
  assert 4 <= steps_before < 400

  # The command again resumes; --resume lets it stop earlier than the killed run planned.
  target = f"--config.outer.steps={steps_before + 6}"
  subprocess.run(_command(tmp_path / "killed", target, "--resume"), cwd=REPO, env=env, check=True,
                 capture_output=True)
  subprocess.run(_command(tmp_path / "straight", target), cwd=REPO, env=env, check=True,
                 capture_output=True)
  resumed = read_metrics(tmp_path / "killed" / "tiny")
  assert [row["step"] for row in resumed] == list(range(1, steps_before + 7))
  assert resumed == read_metrics(tmp_path / "straight" / "tiny")
