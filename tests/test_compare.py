"""metatrain.compare pairs two evaluations seed by seed and says which side the seeds agree on."""

import csv
import json
import math

import pytest

from metatrain import compare
from metatrain.eval_report import CSV_FILE, RESULTS_FILE


def _write_runs(directory, losses, num_steps=200, seed=0):
  """An evaluation folder whose runs.csv holds ``losses[(task, optimizer)] = [loss per seed]``."""
  directory.mkdir()
  with (directory / CSV_FILE).open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([*compare.ID_COLUMNS, "test_loss", "train_loss"])
    for (task, optimizer), values in losses.items():
      for s, value in enumerate(values):
        writer.writerow([task, "mlp_classifier", "", 1, num_steps, optimizer, "{}", s, "",
                         "" if value is None else value])
  (directory / RESULTS_FILE).write_text(json.dumps({"settings": {"seed": seed, "seeds": 3}}))
  return directory


def test_paired_ratios_and_verdicts(tmp_path, capsys):
  a = _write_runs(tmp_path / "a", {("mlp", "learned"): [1.0, 2.0, 4.0],
                                   ("cnn", "learned"): [1.0, 3.0, None],
                                   ("vit", "learned"): [2.0, 2.0, 2.0]})
  b = _write_runs(tmp_path / "b", {("mlp", "learned"): [2.0, 4.0, 8.0],
                                   ("cnn", "learned"): [2.0, 1.0, 1.0],
                                   ("vit", "learned"): [1.0, 1.5, 1.0]})
  rows = {r["task"]: r for r in compare.paired_rows(compare.read_runs(a), compare.read_runs(b),
                                                     ("learned",), "train_loss")}
  # Lower by half on every seed: the paired ratio is exactly 0.5 although the means differ 2x
  # with a spread over seeds larger than the difference.
  assert rows["mlp"]["ratio"] == pytest.approx(0.5)
  assert compare.verdict(rows["mlp"], ("A", "B")) == "A lower on every seed"
  # A diverged seed is left out; the other two disagree.
  assert (rows["cnn"]["paired"], rows["cnn"]["left_out"]) == (2, 1)
  assert rows["cnn"]["ratio"] == pytest.approx(math.sqrt(0.5 * 3.0))
  assert compare.verdict(rows["cnn"], ("A", "B")) == "mixed"
  assert compare.verdict(rows["vit"], ("A", "B")) == "B lower on every seed"

  assert compare.main([str(a), str(b), "--optimizers", "learned", "--names", "new,old"]) == 0
  out = capsys.readouterr().out
  assert "| mlp | 200 | learned |" in out and "new lower on every seed" in out


def test_tasks_of_another_step_budget_are_not_paired(tmp_path):
  a = _write_runs(tmp_path / "a", {("mlp", "learned"): [1.0]}, num_steps=200)
  b = _write_runs(tmp_path / "b", {("mlp", "learned"): [1.0]}, num_steps=2000)
  with pytest.raises(compare.CompareError, match="share no task"):
    compare.paired_rows(compare.read_runs(a), compare.read_runs(b), ("learned",), "train_loss")


def test_bad_input_is_named(tmp_path, capsys):
  a = _write_runs(tmp_path / "a", {("mlp", "learned"): [1.0]})
  b = _write_runs(tmp_path / "b", {("mlp", "learned"): [1.0]}, seed=1)
  assert compare.main([str(a), str(b)]) == 2
  assert "different seed" in capsys.readouterr().err
  c = _write_runs(tmp_path / "c", {("mlp", "learned"): [1.0]})
  assert compare.main([str(a), str(c), "--metric", "accuracy"]) == 2
  assert "valid: ['test_loss', 'train_loss']" in capsys.readouterr().err
  assert compare.main([str(a), str(c), "--optimizers", "muon"]) == 2
  assert "valid: ['learned']" in capsys.readouterr().err
  assert compare.main([str(a), str(tmp_path / "missing")]) == 2
  assert "holds no runs.csv" in capsys.readouterr().err
