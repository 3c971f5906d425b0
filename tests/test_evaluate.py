"""Evaluation on suites: the suites' tasks, tuned baselines, resuming, the report, clear errors."""

import json

import jax
import numpy as np
import pytest

import lopt
from lopt import shipped
from metatrain import eval_report, evaluate, ship, suites
from metatrain.config import ConfigError

TINY_GRIDS = ["--config.grids.adamw.learning_rates=(1e-2,1e-1)",
              "--config.grids.adamw.weight_decays=(1e-2,)",
              "--config.grids.muon.learning_rates=(1e-2,)",
              "--config.grids.muon.weight_decays=(1e-2,)",
              "--config.grids.adam.learning_rates=(1e-2,)",
              "--config.grids.lion.learning_rates=(1e-3,)",
              "--config.grids.sgd.learning_rates=(1e-1,)", "--seeds", "2", "--no-progress"]
REPORT_FILES = ("report.md", "results.json", "runs.csv", "evaluation.json", "vs_reference.png",
                "curves_mlp-digits.png", "curves_quadratic.png")


@pytest.fixture(scope="module")
def saved_lo(tmp_path_factory):
  """A learned optimizer saved as meta-training saves one, at its initial meta-parameters."""
  path = tmp_path_factory.mktemp("optimizer") / "lo"
  lo = lopt.MLPLOpt()
  lopt.save(path, lo, lo.init_meta_params(jax.random.PRNGKey(0)), {"num_steps": 20})
  return path


def _run_files(workdir):
  return {p.relative_to(workdir): p.stat().st_mtime_ns for p in (workdir / "runs").rglob("*.json")}


@pytest.mark.slow
def test_smoke_suite_end_to_end_and_resume_recomputes_only_a_missing_result(saved_lo, tmp_path):
  command = ["--optimizer", str(saved_lo), "--suite", "smoke", "--workdir", str(tmp_path)]
  assert evaluate.main(command + TINY_GRIDS) == 0
  for name in REPORT_FILES:
    assert (tmp_path / name).is_file(), name
  runs = _run_files(tmp_path)
  assert len(runs) == 2 * 6  # Two tasks, the learned optimizer and five tuned baselines.
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["tasks"]) == {"mlp-digits", "quadratic"}
  assert results["score"]["train_loss"]["tasks"] == 2
  report = (tmp_path / "report.md").read_text()
  assert "| learned optimizer |" in report and "## Score against tuned adamw" in report
  rows = (tmp_path / "runs.csv").read_text().splitlines()
  assert len(rows) == 1 + 2 * 6 * 2  # Header, then (task, optimizer, seed).

  deleted = tmp_path / "runs" / "quadratic" / "adamw.json"
  before = deleted.read_text()
  deleted.unlink()
  assert evaluate.main(command + TINY_GRIDS) == 0
  after = _run_files(tmp_path)
  changed = {path for path, mtime in after.items() if runs.get(path) != mtime}
  assert changed == {deleted.relative_to(tmp_path)}
  assert deleted.read_text() == before


def _fake_result(spec, optimizer, config, lo_path, keys):
  """A result of the shape ``evaluate_task`` returns, from the names alone (no training)."""
  loss = 1.0 + len(spec.name) / 10 + (0.5 if optimizer == evaluate.LEARNED else len(optimizer) / 10)
  result = {"hyperparameters": {}, "final": {"train_loss": [loss, loss + 0.1],
                                             "test_loss": [loss + 0.2, loss + 0.3]},
            "curve": {"steps": [1, 2, 3], "train_loss": [[2 * loss, 1.5 * loss, loss]] * 2}}
  if optimizer != evaluate.LEARNED:
    result["hyperparameters"] = {"learning_rate": 0.01}
    result["grid"] = [{"learning_rate": 0.01, "mean_final_train_loss": loss}]
  return result


@pytest.fixture
def calls(monkeypatch):
  """``evaluate_task`` replaced by ``_fake_result``; the list of its (task, optimizer) calls."""
  made = []
  monkeypatch.setattr(evaluate, "evaluate_task",
                      lambda spec, optimizer, *args: made.append((spec.name, optimizer))
                      or _fake_result(spec, optimizer, *args))
  return made


def test_a_rerun_computes_only_missing_results(saved_lo, tmp_path, calls):
  command = ["--optimizer", str(saved_lo), "--suite", "smoke", "--workdir", str(tmp_path),
             "--no-progress"]
  assert evaluate.main(command) == 0
  assert len(calls) == 2 * 6
  for name in REPORT_FILES:
    assert (tmp_path / name).is_file(), name
  (tmp_path / "runs" / "quadratic" / "lion.json").unlink()
  calls.clear()
  assert evaluate.main(command) == 0
  assert calls == [("quadratic", "lion")]


def test_skipped_tasks_are_reported_and_a_later_run_adds_them_to_the_same_workdir(
    saved_lo, tmp_path, calls, capsys):
  command = ["--optimizer", str(saved_lo), "--suite", "smoke", "--workdir", str(tmp_path),
             "--no-progress"]
  assert evaluate.main(command + ["--skip-tasks", "quadratic"]) == 0
  assert {task for task, _ in calls} == {"mlp-digits"}
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["tasks"]) == {"mlp-digits"}
  assert results["skipped"] == [{"task": "quadratic",
                                 "reason": "left out of this evaluation (config.skip_tasks)"}]
  calls.clear()
  assert evaluate.main(command) == 0  # Same workdir, no --overwrite: only the skipped task runs.
  assert {task for task, _ in calls} == {"quadratic"} and len(calls) == 6
  assert set(json.loads((tmp_path / "results.json").read_text())["tasks"]) == {
      "mlp-digits", "quadratic"}
  capsys.readouterr()
  assert evaluate.main(command + ["--skip-tasks", "quadratic,cubic"]) == 2
  err = capsys.readouterr().err
  assert "['cubic']" in err and "valid choices: ['mlp-digits', 'quadratic']" in err
  assert evaluate.main(command + ["--config.suite=width"]) == 2  # --suite is its shorthand.
  assert "--suite and --config.suite both set suite; give one" in capsys.readouterr().err


def test_a_baseline_cache_shares_tuned_baselines_between_evaluations_of_other_optimizers(
    saved_lo, tmp_path, calls):
  other_lo = tmp_path / "other_lo"
  lo = lopt.AdafacMLPLOpt()
  lopt.save(other_lo, lo, lo.init_meta_params(jax.random.PRNGKey(1)), {"num_steps": 20})
  cache = ["--baseline-cache", str(tmp_path / "cache"), "--no-progress", "--suite", "smoke"]
  assert evaluate.main(["--optimizer", str(saved_lo), "--workdir", str(tmp_path / "a"), *cache]) == 0
  assert len(calls) == 2 * 6 and len(list((tmp_path / "cache").glob("*.json"))) == 2 * 5
  calls.clear()
  assert evaluate.main(["--optimizer", str(other_lo), "--workdir", str(tmp_path / "b"), *cache]) == 0
  assert calls == [("mlp-digits", "learned"), ("quadratic", "learned")]
  for path in (tmp_path / "a" / "runs").rglob("adamw.json"):
    assert (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_text() == path.read_text()
  calls.clear()  # Another grid is another baseline.
  assert evaluate.main(["--optimizer", str(other_lo), "--workdir", str(tmp_path / "c"), *cache,
                        "--config.grids.sgd.learning_rates=(0.5,)"]) == 0
  assert sorted(calls) == sorted([(task, optimizer) for task in ("mlp-digits", "quadratic")
                                  for optimizer in ("learned", "sgd")])


def test_a_workdir_of_another_evaluation_is_refused_unless_overwritten(tmp_path):
  record = {"suite": "smoke", "seeds": 2}
  evaluate.prepare_workdir(tmp_path / "eval", record, overwrite=False)
  (tmp_path / "eval" / "runs").mkdir()
  evaluate.prepare_workdir(tmp_path / "eval", record, overwrite=False)  # The same: resumes.
  with pytest.raises(ConfigError, match=r"other settings \(differs in \['seeds'\]\); pass "
                                        "--overwrite"):
    evaluate.prepare_workdir(tmp_path / "eval", {"suite": "smoke", "seeds": 3}, overwrite=False)
  evaluate.prepare_workdir(tmp_path / "eval", {"suite": "smoke", "seeds": 3}, overwrite=True)
  assert not (tmp_path / "eval" / "runs").exists()
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("x")
  with pytest.raises(ConfigError, match="holds no evaluation"):
    evaluate.prepare_workdir(tmp_path / "other", record, overwrite=True)


@pytest.mark.parametrize("argument, message", [
    (["--suite", "nope"], "unknown suite 'nope'; valid suites: ['in-distribution', 'width', "
                          "'depth', 'horizon', 'data', 'architecture', 'smoke']"),
    (["--seeds", "0"], "config.seeds must be >= 1, got 0"),
    (["--config.baselines=('adam',)"], "config.baselines must include 'adamw'"),
    (["--config.grids.adam.learning_rates=(-1.0,)"], "bad grid point {'learning_rate': -1.0} of "
                                                     "'adam': learning_rate must be positive"),
])
def test_bad_settings_give_one_clear_error_and_write_nothing(argument, message, saved_lo, tmp_path,
                                                             capsys):
  code = evaluate.main(["--optimizer", str(saved_lo), "--suite", "smoke", "--workdir",
                        str(tmp_path / "eval"), *argument])
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ") and message in err, err
  assert not (tmp_path / "eval").exists()


def test_an_unknown_optimizer_is_a_clear_error(tmp_path, capsys):
  code = evaluate.main(["--optimizer", str(tmp_path / "nope"), "--suite", "smoke", "--workdir",
                        str(tmp_path / "eval")])
  err = capsys.readouterr().err
  assert code == 2
  assert f"no learned optimizer at '{tmp_path / 'nope'}'" in err and "shipped optimizer" in err
  assert not (tmp_path / "eval").exists()


def test_a_shipped_name_resolves_to_its_checkpoint(saved_lo, monkeypatch):
  monkeypatch.setattr(shipped, "CHECKPOINTS", saved_lo.parent)
  assert evaluate.resolve_optimizer("lo") == saved_lo
  with pytest.raises(ConfigError, match=r"shipped optimizer, one of \['lo'\]"):
    evaluate.resolve_optimizer("nope")


def _card(task, horizon=100):
  return {"metadata": {"config": {"task": task, "estimator": {"horizon": horizon}}}}


def test_suites_scale_the_meta_training_tasks():
  mixture = {"name": "mixture", "members": {
      "mlp": {"name": "mlp_classifier", "weight": 1.0, "hidden_sizes": [64], "base_width": 64,
              "parametrization": "mup"},
      "quad": {"name": "quadratic", "weight": 1.0}}}
  base = suites.meta_training_tasks(_card(mixture))
  assert [(t.name, t.family, t.num_steps) for t in base] == [("mlp", "mlp_classifier", 100),
                                                            ("quad", "quadratic", 100)]
  specs, skipped = suites.build("width", base, on_cpu=False)
  by_name = {s.name: s for s in specs}
  assert by_name["mlp-width16x"].kwargs == {"hidden_sizes": (1024,), "base_width": 64,
                                            "parametrization": "mup"}
  assert by_name["char_lm-width4x"].kwargs["width"] == 128
  assert [s.reason for s in skipped if s.name == "quad-width4x"] == [
      "the family 'quadratic' has no width"]
  depth, _ = suites.build("depth", base, on_cpu=True)
  assert [s.kwargs.get("hidden_sizes") for s in depth if s.base == "mlp"] == [
      (64,), (64, 64), (64, 64, 64, 64)]
  horizon, _ = suites.build("horizon", base, on_cpu=True, steps_multiplier=0.5)
  assert [(s.name, s.num_steps) for s in horizon] == [
      ("mlp", 50), ("quad", 50), ("mlp-horizon10x", 500), ("quad-horizon10x", 500),
      ("mlp-horizon25x", 1250), ("quad-horizon25x", 1250)]


def test_suites_without_a_meta_training_config_use_the_quickstart_task():
  (spec,), _ = suites.build("in-distribution", suites.meta_training_tasks({"metadata": {}}),
                            on_cpu=True)
  assert (spec.family, spec.kwargs["dataset"], spec.num_steps) == ("mlp_classifier", "digits", 200)


def test_costly_tasks_run_on_a_cpu_for_cheap_families_only():
  lm = suites.meta_training_tasks(_card({"name": "char_lm"}))
  on_cpu, skipped = suites.build("horizon", lm, on_cpu=True)
  assert [s.num_steps for s in on_cpu] == [100, 1000]
  assert [s.name for s in skipped] == ["char_lm-horizon25x"]
  assert "families ['mlp_classifier', 'teacher', 'quadratic'] only" in skipped[0].reason
  on_accelerator, skipped = suites.build("horizon", lm, on_cpu=False)
  assert [s.num_steps for s in on_accelerator] == [100, 1000, 2500] and not skipped
  lm_width, skipped = suites.build("width", lm, on_cpu=False)
  assert [s.kwargs.get("width") for s in lm_width] == [None, 128, 512]  # 32 by default.
  assert len(skipped) == 3 and all("which this suite scales instead" in s.reason for s in skipped)
  width, _ = suites.build("width", suites.meta_training_tasks({"metadata": {}}), on_cpu=True)
  assert [s.name for s in width] == ["mlp_classifier", "mlp_classifier-width4x",
                                     "mlp_classifier-width16x", "char_lm", "char_lm-width4x"]


def test_data_suite_leaves_out_tfds_datasets_that_are_not_prepared():
  specs, skipped = suites.build("data", (), on_cpu=True)
  for name in ("mlp-mnist", "mlp-fashion_mnist", "mlp-cifar10"):
    reasons = [s.reason for s in skipped if s.name == name]
    assert name in {s.name for s in specs} or "is not prepared" in reasons[0]
  assert {"teacher-regression", "teacher-classification", "quadratic"} <= {s.name for s in specs}


def test_tuning_keeps_the_best_finite_point_and_matches_the_plain_baseline():
  spec = suites.TaskSpec("quadratic", "quadratic", {"dim": 4}, 10)
  family, keys = spec.make_family(), evaluate.eval_keys(0, 2)
  points = [{"learning_rate": lr} for lr in (1e-2, 1e-1, 1e6)]
  tuned = evaluate.tune_baseline(family, keys, 10, "sgd", points)
  assert tuned["grid"][2]["mean_final_train_loss"] is None  # Diverged.
  assert tuned["best"] == {"learning_rate": 0.1}
  plain = evaluate.train_population(family, lopt.make_baseline("sgd", 0.1, 10), keys, 10)
  np.testing.assert_allclose(tuned["runs"]["train_loss"], plain["train_loss"], rtol=1e-5)


def test_muon_is_a_default_baseline_tuned_on_adamw_s_grid_with_the_learning_rate_as_vmap_axis():
  config = evaluate.default_config()
  evaluate.validate(config)
  assert "muon" in config.baselines
  assert evaluate.grid_points(config, "muon") == evaluate.grid_points(config, "adamw")
  spec = suites.TaskSpec("mlp", "mlp_classifier", {"hidden_sizes": (8,), "batch_size": 32}, 10)
  family, keys = spec.make_family(), evaluate.eval_keys(0, 2)
  points = [{"learning_rate": lr, "weight_decay": 0.1} for lr in (1e-3, 3e-2)]
  tuned = evaluate.tune_baseline(family, keys, 10, "muon", points)
  plain = evaluate.train_population(
      family, lopt.make_baseline("muon", tuned["best"]["learning_rate"], 10, weight_decay=0.1),
      keys, 10)
  np.testing.assert_allclose(tuned["runs"]["train_loss"], plain["train_loss"], rtol=1e-5)


def test_a_best_learning_rate_at_the_grid_s_end_extends_the_grid_past_it():
  spec = suites.TaskSpec("quadratic", "quadratic", {"dim": 4}, 10)
  family, keys = spec.make_family(), evaluate.eval_keys(0, 2)
  points = [{"learning_rate": lr} for lr in (1e-4, 1e-3, 1e-2)]  # Too small for 10 steps.
  as_given = evaluate.tune_baseline(family, keys, 10, "sgd", points)
  assert as_given["best"] == {"learning_rate": 1e-2} and len(as_given["grid"]) == 3
  extended = evaluate.tune_baseline(family, keys, 10, "sgd", points, extensions=2)
  assert [p["learning_rate"] for p in extended["grid"]] == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1])
  assert extended["best"]["learning_rate"] > 1e-2
  assert (extended["grid"][3]["mean_final_train_loss"]
          < extended["grid"][2]["mean_final_train_loss"])


@pytest.mark.parametrize("learning_rates,best,beyond", [
    ((1e-3, 3e-3, 1e-2), 1e-3, 1e-3 / 3), ((1e-3, 3e-3, 1e-2), 1e-2, 1e-2 * 1e-2 / 3e-3),
    ((1e-3, 3e-3, 1e-2), 3e-3, None), ((1e-3, 1e-2), 1e-2, None)])
def test_the_learning_rate_past_the_edge_continues_the_grid_s_ratio(learning_rates, best, beyond):
  assert evaluate._past_the_edge(list(learning_rates), best) == pytest.approx(beyond)


def test_score_counts_wins_and_normalised_losses_and_diverged_runs():
  def result(train, test):
    return {"final": {"train_loss": train, "test_loss": test},
            "curve": {"steps": [1, 2], "train_loss": [[t, t] for t in train]}}
  comparisons = {
      "a": eval_report.compare({"lo": result([1.0, 1.0], [2.0, 2.0]),
                                "adamw": result([2.0, 2.0], [1.0, 1.0])}, "lo", "adamw"),
      "b": eval_report.compare({"lo": result([None, 1.0], [None, 1.0]),
                                "adamw": result([1.0, 1.0], [1.0, 1.0])}, "lo", "adamw")}
  assert comparisons["a"]["train_loss"] == {"learned": 1.0, "reference": 2.0, "wins": True,
                                            "normalised": 0.5}
  assert comparisons["a"]["speedup"] == 2.0 and comparisons["b"]["speedup"] is None
  score = eval_report.aggregate(comparisons)
  assert score["train_loss"] == {"wins": 1, "tasks": 2, "win_fraction": 0.5, "learned_diverged": 1,
                                 "mean_normalised": 0.5, "median_normalised": 0.5,
                                 "normalised_over": 1}
  assert score["test_loss"]["wins"] == 0 and score["test_loss"]["mean_normalised"] == 2.0


@pytest.mark.parametrize("best,note", [
    ({"learning_rate": 1e-3, "weight_decay": 0.1}, " (learning rate at the grid's edge)"),
    ({"learning_rate": 1e-2, "weight_decay": 0.1}, ""),  # Two weight decays: no edge to speak of.
    ({"learning_rate": 1e-1, "weight_decay": 1e-3}, " (learning rate at the grid's edge)")])
def test_a_baseline_tuned_at_the_edge_of_its_learning_rate_grid_is_flagged(best, note):
  grid = [{"learning_rate": lr, "weight_decay": wd} for lr in (1e-3, 1e-2, 1e-1)
          for wd in (1e-3, 0.1)]
  assert eval_report._edge_note({"hyperparameters": best, "grid": grid}) == note


def test_ship_writes_the_optimizer_with_its_evaluation_on_the_card(saved_lo, tmp_path, monkeypatch):
  monkeypatch.setattr(evaluate, "evaluate_task", _fake_result)
  workdir = tmp_path / "eval"
  assert evaluate.main(["--optimizer", str(saved_lo), "--suite", "smoke", "--workdir",
                        str(workdir), "--no-progress"]) == 0
  shipped_dir = tmp_path / "checkpoints"
  arguments = ["--optimizer", str(saved_lo), "--name", "tiny-lo", "--evaluations", str(workdir),
               "--device", "a test machine", "--trained-on", "another machine"]
  monkeypatch.setattr(ship.shipped, "CHECKPOINTS", shipped_dir)
  assert ship.main(arguments) == 0
  assert lopt.pretrained_names(shipped_dir) == ["tiny-lo"]
  theta_files = lambda root: {p.relative_to(root): p.read_bytes()
                              for p in (root / "theta").rglob("*") if p.is_file()}
  assert theta_files(shipped_dir / "tiny-lo") == theta_files(saved_lo)  # Copied, not re-saved.
  metadata = lopt.read_card(shipped_dir / "tiny-lo")["metadata"]
  assert metadata["compute"]["device"] == "another machine"
  evaluation = metadata["evaluation"]
  smoke = evaluation["suites"]["smoke"]
  expected = _fake_result(suites.build("smoke", (), on_cpu=True)[0][0], "adamw", None, None, None)
  assert smoke["tasks"]["mlp-digits"]["adamw_train_loss"] == pytest.approx(
      np.mean(expected["final"]["train_loss"]))
  # The fake learned optimizer ties with AdamW (``_fake_result``): no win, normalised loss 1.
  assert smoke["beats_tuned_adamw_train_loss"] == 0 and smoke["num_tasks"] == 2
  assert smoke["median_normalised_train_loss"] == pytest.approx(1.0)
  assert evaluation["seeds"] == 3 and smoke["device"] == "a test machine"
  assert {p.name for p in (shipped_dir / "tiny-lo" / "evaluation" / "smoke").iterdir()} == {
      "report.md", "runs.csv", "vs_reference.png"}
  assert ship.main(arguments) == 2  # Shipped already: replaced only with --overwrite.

  # Shipping it again with another suite adds that suite and keeps the rest.
  other = tmp_path / "eval-in-distribution"
  assert evaluate.main(["--optimizer", str(saved_lo), "--suite", "in-distribution", "--workdir",
                        str(other), "--no-progress"]) == 0
  assert ship.main(["--optimizer", str(shipped_dir / "tiny-lo"), "--name", "tiny-lo",
                    "--evaluations", str(other), "--device", "a CPU", "--overwrite"]) == 0
  metadata = lopt.read_card(shipped_dir / "tiny-lo")["metadata"]
  assert metadata["compute"]["device"] == "another machine"
  assert metadata["evaluation"]["suites"]["smoke"] == smoke
  assert metadata["evaluation"]["suites"]["in-distribution"]["device"] == "a CPU"
  assert {p.name for p in (shipped_dir / "tiny-lo" / "evaluation").iterdir()} == {
      "smoke", "in-distribution"}
  assert (shipped_dir / "tiny-lo" / "evaluation" / "smoke" / "report.md").is_file()


def test_an_optimizer_that_takes_a_learning_rate_is_also_tuned_on_the_reference_s_grid(tmp_path):
  path = tmp_path / "ortho"
  lo = lopt.OrthoMLPLOpt()
  lopt.save(path, lo, lo.init_meta_params(jax.random.PRNGKey(0)), {"num_steps": 20})
  workdir = tmp_path / "eval"
  command = ["--optimizer", str(path), "--suite", "smoke", "--workdir", str(workdir),
             "--config.baselines=('adamw','muon')", "--config.grid_extensions=0"]
  assert evaluate.main(command + TINY_GRIDS) == 0
  results = json.loads((workdir / "results.json").read_text())
  tuned = results["tasks"]["mlp-digits"]["results"][evaluate.LEARNED_TUNED]
  assert [p["learning_rate"] for p in tuned["grid"]] == [1e-2, 1e-1]  # AdamW's grid.
  # The tuned run is the saved optimizer loaded at the best point (learning rate as a vmap axis).
  spec = suites.TaskSpec("mlp-digits", "mlp_classifier", {"hidden_sizes": (8,), "batch_size": 32},
                         20)
  plain = evaluate.train_population(
      spec.make_family(), lopt.load(path, 20, **tuned["hyperparameters"]),
      evaluate.eval_keys(0, 2), 20)
  np.testing.assert_allclose(tuned["final"]["train_loss"], plain["train_loss"], rtol=1e-4)
  titles = set(results["other_scores"])
  assert titles == {"The learned optimizer at its card's defaults against tuned muon",
                    "The learned optimizer tuned on the same grid against tuned adamw",
                    "The learned optimizer tuned on the same grid against tuned muon"}
  assert "### The learned optimizer tuned on the same grid against tuned muon" in (
      workdir / "report.md").read_text()
