"""Meta-training end to end on a tiny problem: it learns, it resumes exactly, it refuses bad runs."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

import lopt
from metatrain import evaluate, experiment, export, selection
from metatrain.config import ConfigError, build_lopt, build_task_family, validate
from metatrain.metrics_log import read_metrics
from metatrain.train import meta_train
from tasks import family_roles


def _mean_training_loss(config, theta):
  """The meta-objective on fixed held-out tasks: mean training loss over a whole inner training."""
  family, lo = build_task_family(config), build_lopt(config)
  horizon = config.estimator.horizon
  keys = evaluate.eval_keys(seed=7, num_seeds=8)
  runs = evaluate.train_population(family, lopt.as_optax(lo, theta, horizon), keys, horizon)
  return float(runs["losses"].mean())


def test_meta_training_lowers_the_meta_loss(tiny_config, tmp_path):
  config = tiny_config("--config.outer.steps=40", "--config.checkpoint_every=40",
                       "--config.outer.learning_rate=0.03")
  state = meta_train(config, tmp_path, show_progress=False)
  theta0 = build_lopt(config).init_meta_params(jax.random.split(jax.random.PRNGKey(0))[0])
  before, after = _mean_training_loss(config, theta0), _mean_training_loss(config, state["theta"])
  assert after < 0.8 * before, (before, after)
  assert np.isfinite([row["meta_loss"] for row in read_metrics(tmp_path)]).all()


@pytest.mark.parametrize("estimator, options", [
    ("truncated_es", ()), ("pes", ()),
    ("nres", ("--config.estimator.shaping=centered_rank", "--config.outer.weight_decay=0.01",
              "--config.outer.clip=update"))])
def test_resumed_run_gives_identical_metrics_and_theta(estimator, options, tiny_config, tmp_path):
  """The checkpoint holds everything: theta, meta-optimizer, inner states, PES accumulators, NRES
  perturbations and the theta chosen on validation tasks so far (validated at step 2,
  checkpointed at 3)."""
  config = lambda *extra: tiny_config(f"--config.estimator.name={estimator}",
                                      "--config.eval.validate_every=2", *options, *extra)
  uninterrupted = meta_train(config(), tmp_path / "a", show_progress=False)
  meta_train(config("--config.outer.steps=3"), tmp_path / "b", show_progress=False)
  resumed = meta_train(config(), tmp_path / "b", show_progress=False)
  assert read_metrics(tmp_path / "b") == read_metrics(tmp_path / "a")
  assert [row["step"] for row in read_metrics(tmp_path / "b")] == list(range(1, 7))
  jax.tree.map(np.testing.assert_array_equal, resumed["theta"], uninterrupted["theta"])
  jax.tree.map(np.testing.assert_array_equal, resumed["best"], uninterrupted["best"])


@pytest.mark.parametrize("options", [(), ("--config.outer.schedule=warmup_cosine",
                                      "--config.outer.warmup_steps=2")])
def test_a_time_limited_run_stops_early_and_resumes_to_the_same_theta(options, tiny_config,
                                                                      tmp_path):
  """Also with a learning-rate schedule, whose step the checkpoint holds (a run stopped by
  outer.steps instead would have followed another schedule: it ends at outer.steps)."""
  uninterrupted = meta_train(tiny_config(*options), tmp_path / "a", show_progress=False)
  stopped = meta_train(tiny_config(*options, "--config.outer.max_seconds=1e-9"), tmp_path / "b",
                       show_progress=False)
  assert int(stopped["step"]) == 1  # Out of time after the first step, checkpointed there.
  resumed = meta_train(tiny_config(*options), tmp_path / "b", show_progress=False)
  assert read_metrics(tmp_path / "b") == read_metrics(tmp_path / "a")
  jax.tree.map(np.testing.assert_array_equal, resumed["theta"], uninterrupted["theta"])


def test_validation_keeps_the_theta_of_the_best_scored_step(tiny_config, tmp_path):
  config = tiny_config("--config.eval.validate_every=2", "--config.eval.validation_seeds=3")
  state = meta_train(config, tmp_path / "full", show_progress=False)
  scores = {row["step"]: row["validation_score"] for row in read_metrics(tmp_path / "full")
            if "validation_score" in row}
  assert sorted(scores) == [2, 4, 6] and np.isfinite(list(scores.values())).all()
  best_step = min(scores, key=scores.get)
  assert int(state["best"].step) == best_step
  # The kept theta is theta at that step: a run that stops there ends with it.
  stopped = meta_train(tiny_config(f"--config.outer.steps={best_step}"), tmp_path / "stopped",
                       show_progress=False)
  jax.tree.map(np.testing.assert_array_equal, state["best"].theta, stopped["theta"])
  # Its score is the mean log final training loss of the validation tasks, trained by the
  # learned optimizer as users run it.
  family, horizon = build_task_family(config), config.estimator.horizon
  tx = lopt.as_optax(build_lopt(config), state["best"].theta, horizon,
                     family_roles(family))
  runs = evaluate.train_population(family, tx, selection.validation_keys(config.seed, 3), horizon)
  assert float(state["best"].score) == pytest.approx(np.log(runs["train_loss"]).mean(), rel=1e-4)
  # Validation can be turned on when resuming a run that had none; it validates from then on.
  meta_train(tiny_config("--config.outer.steps=3"), tmp_path / "late", show_progress=False)
  meta_train(config, tmp_path / "late", show_progress=False)
  late = {row["step"]: row["validation_score"] for row in read_metrics(tmp_path / "late")
          if "validation_score" in row}
  assert late == {step: scores[step] for step in (4, 6)}


def test_a_run_can_start_from_a_saved_optimizer_and_resumes_without_it(tiny_config, tmp_path):
  """``config.outer.init_from`` starts theta from a saved optimizer (here to go on with another
  estimator); a resumed run reads its checkpoint, not the saved optimizer again."""
  first = meta_train(tiny_config("--config.outer.steps=3"), tmp_path / "first", show_progress=False)
  lopt.save(tmp_path / "saved", build_lopt(tiny_config()), first["theta"])
  # At outer learning rate 0, theta stays where it started.
  config = lambda *extra: tiny_config(f"--config.outer.init_from={tmp_path / 'saved'}",
                                      "--config.estimator.name=tbptt",
                                      "--config.outer.learning_rate=0.0", *extra)
  meta_train(config("--config.outer.steps=2"), tmp_path / "tuned", show_progress=False)
  shutil.rmtree(tmp_path / "saved")
  tuned = meta_train(config("--config.outer.steps=4"), tmp_path / "tuned", show_progress=False)
  assert [row["step"] for row in read_metrics(tmp_path / "tuned")] == [1, 2, 3, 4]
  jax.tree.map(np.testing.assert_array_equal, tuned["theta"], first["theta"])
  with pytest.raises(ConfigError, match="no learned optimizer at"):
    meta_train(config(), tmp_path / "new", show_progress=False)
  wider = build_lopt(tiny_config("--config.lopt.hidden_size=16"))
  lopt.save(tmp_path / "wider", wider, wider.init_meta_params(jax.random.PRNGKey(0)))
  with pytest.raises(ConfigError, match=r"holds MLPLOpt\(hidden_size=16.*but config.lopt builds"):
    meta_train(tiny_config(f"--config.outer.init_from={tmp_path / 'wider'}"), tmp_path / "w",
               show_progress=False)


def test_experiment_writes_optimizer_report_and_plots(tiny_config, tmp_path):
  results = experiment.run(tiny_config("--config.eval.validate_every=3"), str(tmp_path),
                           show_progress=False)
  run_dir = tmp_path / "tiny"
  for name in ("report.md", "results.json", "meta_training.png", "config.json",
               "optimizer/card.json", "evaluation/report.md", "evaluation/curves_mlp_classifier.png"):
    assert (run_dir / name).is_file(), name
  # The evaluation is the in-distribution suite's, with the baselines tuned as in every suite.
  evaluation = json.loads((run_dir / "evaluation" / "results.json").read_text())
  assert set(evaluation["tasks"]["mlp_classifier"]["results"]) == {"learned", "adamw"}
  adamw = evaluation["tasks"]["mlp_classifier"]["results"]["adamw"]
  assert len(adamw["final"]["train_loss"]) == 2 and {"learning_rate", "weight_decay"} <= set(
      adamw["hyperparameters"])
  assert results["score"] == evaluation["score"]
  card = lopt.read_card(run_dir / "optimizer")
  assert card["metadata"]["num_steps"] == 20 and card["metadata"]["outer_steps"] == 6
  assert card["metadata"]["git_commit"]
  assert card["metadata"]["selected_outer_step"] in (3, 6)
  assert "| learned optimizer |" in (run_dir / "report.md").read_text()
  assert "Saved optimizer: theta of outer step" in (run_dir / "report.md").read_text()


def test_run_directory_with_another_config_is_refused_unless_resumed_or_overwritten(
    tiny_config, tmp_path):
  experiment.prepare_run_dir(tmp_path / "run", tiny_config(), resume=False, overwrite=False)
  (tmp_path / "run" / "marker").write_text("x")
  experiment.prepare_run_dir(tmp_path / "run", tiny_config(), resume=False, overwrite=False)
  other = tiny_config("--config.estimator.sigma=0.05")
  with pytest.raises(ConfigError, match=r"different config \(differs in \['estimator.sigma'\]\)"):
    experiment.prepare_run_dir(tmp_path / "run", other, resume=False, overwrite=False)
  experiment.prepare_run_dir(tmp_path / "run", other, resume=True, overwrite=False)
  assert json.loads((tmp_path / "run" / "config.json").read_text())["estimator"]["sigma"] == 0.05
  assert (tmp_path / "run" / "marker").exists()
  experiment.prepare_run_dir(tmp_path / "run", tiny_config(), resume=False, overwrite=True)
  assert not (tmp_path / "run" / "marker").exists()


def test_resuming_a_checkpoint_of_another_shape_is_a_clear_error(tiny_config, tmp_path):
  meta_train(tiny_config("--config.outer.steps=3"), tmp_path, show_progress=False)
  with pytest.raises(ConfigError, match=r"step 3 .*\(\d+ arrays differ, e\.g\. estimator_state/"):
    meta_train(tiny_config("--config.estimator.population=8"), tmp_path, show_progress=False)


def test_a_mixture_meta_trains_one_slice_per_family_with_sampled_horizons(tiny_config, tmp_path):
  config = tiny_config("--config.estimator.min_horizon=10", "--config.estimator.normalization=relative",
                       "--config.outer.steps=3")
  config.task = ConfigDict(dict(name="mixture", members=ConfigDict(dict(
      digits=ConfigDict(dict(name="mlp_classifier", weight=1.0, hidden_sizes=(8,), batch_size=16)),
      teacher=ConfigDict(dict(name="teacher", weight=1.0, hidden_sizes=(8,), batch_size=16,
                              eval_size=64))))))
  validate(config)
  results = experiment.run(config, str(tmp_path), show_progress=False)
  run_dir = tmp_path / "tiny"
  assert results["score"]["train_loss"]["tasks"] == 2
  for member in ("digits", "teacher"):
    assert (run_dir / "evaluation" / f"curves_{member}.png").is_file()
    assert f"Held-out `{member}` tasks" in (run_dir / "report.md").read_text()
  rows = read_metrics(run_dir)
  assert len(rows) == 3
  for row in rows:
    assert np.isfinite(row["meta_loss/digits"]) and np.isfinite(row["meta_loss/teacher"])
    # Relative losses start near 1 and shrink as the tasks train.
    assert 0 < row["meta_loss/digits"] < 1.5 and 0 < row["meta_loss/teacher"] < 1.5


def test_meta_training_imports_nothing_of_evaluation_or_plotting():
  """Meta-training (``metatrain.train``) stands below evaluation: it never loads the evaluation
  suites, their reports or matplotlib (checked in a fresh interpreter)."""
  code = ("import sys, metatrain.train; print(sorted(m for m in sys.modules if m.split('.')[0] == "
          "'matplotlib' or m in ('metatrain.evaluate', 'metatrain.eval_report', 'metatrain.suites', "
          "'metatrain.report_pieces', 'metatrain.experiment')))")
  loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert loaded.stdout.strip() == "[]"


def test_export_saves_the_theta_of_a_chosen_checkpoint_with_the_runs_card(tiny_config, tmp_path,
                                                                           capsys):
  config = tiny_config("--config.eval.validate_every=2", "--config.eval.validation_seeds=2")
  experiment.prepare_run_dir(tmp_path / "run", config, resume=False, overwrite=False)
  last = meta_train(config, tmp_path / "run", show_progress=False)
  at_3 = meta_train(tiny_config("--config.outer.steps=3"), tmp_path / "short", show_progress=False)
  assert export.checkpoint_steps(tmp_path / "run") == [3, 6]
  for step, state in ((3, at_3), (None, last)):
    out = export.export(tmp_path / "run", tmp_path / f"lo_{step}", step)
    lo, theta, card = lopt.load_meta_params(out)
    jax.tree.map(np.testing.assert_array_equal, theta, state["theta"])
    assert lo == build_lopt(config) and card["metadata"]["outer_steps"] == (step or 6)
    assert card["metadata"]["num_steps"] == 20 and card["metadata"]["config"]["name"] == "tiny"
  _, best, card = lopt.load_meta_params(export.export(tmp_path / "run", tmp_path / "best",
                                                      best=True))
  jax.tree.map(np.testing.assert_array_equal, best, last["best"].theta)
  assert card["metadata"]["selected_outer_step"] == int(last["best"].step)
  assert export.main(["--run", str(tmp_path / "run"), "--step", "4", "--out",
                      str(tmp_path / "lo_4")]) == 2
  assert "no checkpoint of outer step 4; valid steps: [3, 6]" in capsys.readouterr().err
  assert not (tmp_path / "lo_4").exists()
