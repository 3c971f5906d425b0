"""The benchmark scripts run end to end at tiny sizes and record one row per timed entry.

They write to a temporary ``$BENCHMARK_RESULTS``, never to ``benchmarks/RESULTS.md``. No timing is
asserted: only that every entry was timed and recorded with a positive time and ratio.
"""

import os
import subprocess
import sys

import pytest

import lopt
from conftest import REPO


def _run(script: str, args: list[str], results_file) -> dict[str, list[list[str]]]:
  """Runs ``benchmarks/<script>`` and returns ``{section: rows}`` of the results it recorded."""
  env = {**os.environ, "BENCHMARK_RESULTS": str(results_file), "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-4000:]
  sections, current = {}, None
  for line in results_file.read_text().splitlines():
    if line.startswith("## "):
      current = sections.setdefault(line[3:], [])
    elif line.startswith("| 20"):  # A dated row, not a header.
      current.append([cell.strip() for cell in line.strip("|").split("|")])
  return sections


def _positive(cell: str) -> float:
  value = float(cell.rstrip("x").replace(",", ""))
  assert value > 0, cell
  return value


def test_lo_step_cost_times_every_optimizer_and_variant(tmp_path):
  sections = _run("lo_step_cost.py", [
      "--steps", "1", "--rounds", "1", "--layer-sizes", "16,8,4", "--lm-width", "16",
      "--lm-depth", "1", "--lm-heads", "2", "--lm-sequence-length", "8", "--lm-batch-size", "2",
      "--mlp-hidden-sizes", "8", "--mlp-batch-size", "4", "--lopts", "mlp,adafac_mlp",
      "--mlp-variants", "auto,matmul,pallas"], tmp_path / "results.md")
  update_rows, step_rows = sections.values()
  # Adam, the baselines, mlp in all three variants, adafac_mlp without Pallas (too small for it).
  update_labels = [row[3] for row in update_rows]
  assert "mlp LO (hidden 32x2, fused Pallas MLP)" in update_labels
  assert "adafac_mlp LO (hidden 4x2, default (auto) MLP kernel)" in update_labels
  assert not any("adafac_mlp LO" in label and "Pallas" in label for label in update_labels)
  assert len(update_rows) == 1 + len(lopt.BASELINES) + 5
  for row in update_rows:
    _positive(row[4]), _positive(row[5])
  # Two models, each Adam, Muon and the five LO entries.
  assert len(step_rows) == 2 * 7
  assert "muon (baseline)" in [row[5] for row in step_rows]
  for row in step_rows:
    _positive(row[6]), _positive(row[7])


def test_lo_update_breakdown_splits_the_update_into_network_and_rest(tmp_path):
  sections = _run("lo_update_breakdown.py", [
      "--layer-sizes", "16,8,4", "--steps", "1", "--rounds", "1",
      "--mlp-variants", "elementwise,matmul,matmul-bfloat16,pallas"], tmp_path / "results.md")
  (rows,) = sections.values()
  assert [row[3] for row in rows] == ["elementwise", "matmul", "matmul-bfloat16", "pallas"]
  for row in rows:
    _positive(row[5]), _positive(row[6])


def test_task_throughput_records_each_family_at_each_population(tmp_path):
  sections = _run("task_throughput.py", ["--families", "quadratic", "teacher", "--steps", "2",
                                         "--repeats", "1"], tmp_path / "results.md")
  (rows,) = sections.values()
  assert [row[2] for row in rows] == ["quadratic", "teacher"]
  for row in rows:
    for cell in row[3:8]:
      _positive(cell)


@pytest.mark.slow
def test_metatrain_throughput_records_every_estimator(tmp_path):
  sections = _run("metatrain_throughput.py", ["--populations", "2", "--steps", "1",
                                              "--unroll-lengths", "5",
                                              "--config.lopt.mlp_kernel=xla"], tmp_path / "results.md")
  throughput, memory = sections.values()
  assert len(throughput) == 4  # One row per estimator.
  assert {row[3] for row in throughput} == {"--config.lopt.mlp_kernel=xla"}
  assert len(memory) >= 1


def test_estimator_signal_records_every_estimator_against_the_first(tmp_path):
  sections = _run("estimator_signal.py",
                  ["--config", "configs/quickstart.py:mlp", "--estimators", "tbptt,truncated_es",
                   "--warmup", "1", "--steps", "3", "--config.estimator.population=4",
                   "--config.task.hidden_sizes=(8,)", "--config.lopt.hidden_size=8"],
                  tmp_path / "results.md")
  (rows,) = sections.values()
  assert [row[4] for row in rows] == ["tbptt", "truncated_es"]
  for row in rows:
    _positive(row[8])  # The mean squared norm of the estimates.
    assert float(row[10].split("±")[0]) <= 1.0
  assert rows[0][11] == "1.000 (to tbptt)"  # The reference's cosine with itself.
