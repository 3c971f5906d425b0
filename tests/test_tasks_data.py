"""Offline data, data kept out of compiled programs, per-task data variations, mixtures and loss
normalisation."""

import re
import sysconfig
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from tasks import objectives, text, variation


def test_text_corpus_is_large_deterministic_and_decodes_back():
  corpus = text.load("python_docs")
  assert len(corpus["train"]) + len(corpus["test"]) > 1_000_000
  assert len(corpus["test"]) == pytest.approx(0.1 * (len(corpus["train"]) + len(corpus["test"])),
                                              abs=1)
  assert corpus["train"].dtype == np.uint8 and corpus["train"].max() < text.VOCAB_SIZE
  assert text.decode(corpus["train"][:22]) == 'The "assert" statement'
  assert text.decode(text.encode("a\nZ~ é")) == "a\nZ~ ?"
  assert np.mean(corpus["train"] == 0) < 0.01  # Almost every character is in the vocabulary.


class _GarbageThatFormatsATraceback:
  """Cyclic garbage whose finalizer formats a traceback, as asyncio does for a failed task."""

  def __init__(self):
    self.cycle = self

  def __del__(self):
    try:
      raise ValueError("a failed task")
    except ValueError as error:
      traceback.format_exception(error)


def test_reading_docstrings_survives_a_collection_that_formats_tracebacks():
  source = Path(sysconfig.get_paths()["stdlib"], "_pydecimal.py").read_text(encoding="utf-8")
  expected = text._docstrings(source)
  for _ in range(5):
    garbage = [_GarbageThatFormatsATraceback() for _ in range(500)]
    del garbage
    assert text._docstrings(source) == expected


def test_digits_are_8x8_images_and_the_training_split_is_shuffled():
  inputs, labels = tasks.datasets.load("digits")["train"]
  assert inputs.shape == (1438, 8, 8, 1) and inputs.min() == 0 and inputs.max() == 1
  stored = tasks.datasets.ImageData("digits").arrays()["train"][0]
  assert stored.dtype == jnp.uint8 and stored.shape == inputs.shape  # On device as stored.
  assert len(set(labels[:50].tolist())) == 10  # A prefix of the split holds every class.


def largest_constant_bytes(hlo: str) -> int:
  """Bytes of the largest array constant in lowered StableHLO text (large ones are in hex)."""
  return max([(len(h) - 2) // 2 for h in re.findall(r'dense<"(0x[0-9A-Fa-f]+)">', hlo)], default=0)


@pytest.mark.parametrize("family", [
    tasks.MLPClassifierFamily(image_normalization="standardize", min_subset=0.5, label_noise=0.1,
                              input_scale=2.0),
    tasks.CharLMFamily(width=16, depth=1, base_width=16, min_subset=0.5)], ids=lambda f: f.name)
def test_a_jitted_step_reads_the_data_as_an_argument_not_as_a_constant(family):
  data = family.data()

  def step(key, data):
    task = family.task(family.sample(key), data)
    params = task.init(key)
    loss, grads = jax.value_and_grad(task.loss)(params, task.batch(key, "train"))
    return loss, grads, task.batch(key, "test"), task.evaluate(params, "test")

  smallest_array = min(x.nbytes for x in jax.tree.leaves(data))
  hlo = jax.jit(step).lower(jax.random.PRNGKey(0), data).as_text()
  assert largest_constant_bytes(hlo) < smallest_array
  closed_over = jax.jit(lambda key: step(key, data)).lower(jax.random.PRNGKey(0)).as_text()
  assert largest_constant_bytes(closed_over) >= smallest_array  # What the check catches.


def test_subsets_label_noise_and_input_scales_vary_per_task():
  draws = jax.vmap(lambda k: variation.sample(k, 1000, 0.25, 0.5, 4.0))(
      jax.random.split(jax.random.PRNGKey(0), 2000))
  assert 250 <= draws["subset_size"].min() and draws["subset_size"].max() <= 1000
  assert 0 <= draws["label_noise"].min() and draws["label_noise"].max() <= 0.5
  assert 0.25 <= draws["input_scale"].min() and draws["input_scale"].max() <= 4.0
  assert abs(np.median(np.log(draws["input_scale"]))) < 0.1  # Log-uniform around 1.
  task_params = {"subset_start": jnp.int32(990), "subset_size": jnp.int32(20),
                 "label_noise": jnp.float32(0.3)}
  index, replace, classes = variation.training_draw(jax.random.PRNGKey(1), task_params, 1000,
                                                    10_000, 10)
  assert set(np.unique(index)) == set(range(990, 1000)) | set(range(10))
  assert np.mean(replace) == pytest.approx(0.3, abs=0.02)
  assert set(np.unique(classes)) == set(range(10))


def test_label_noise_and_input_scale_reach_the_batches():
  family = tasks.MLPClassifierFamily(batch_size=4000)
  true_label = tasks.datasets.load("digits")["train"][1][0]

  def train_batch(noise):  # Every example of the batch is training example 0.
    task_params = {"subset_start": jnp.int32(0), "subset_size": jnp.int32(1),
                   "label_noise": jnp.float32(noise), "input_scale": jnp.float32(3.0)}
    return family.task(task_params, family.data()).batch(jax.random.PRNGKey(0), "train")

  assert np.all(train_batch(0.0)["labels"] == true_label)
  noisy = train_batch(1.0)
  assert np.mean(noisy["labels"] == true_label) == pytest.approx(0.1, abs=0.02)
  np.testing.assert_allclose(noisy["inputs"][0], 3.0 * tasks.datasets.load("digits")["train"][0][0])


def test_mixture_slices_follow_the_weights_and_sum_to_the_population():
  mixture = tasks.make_mixture({
      "mlp": {"name": "mlp_classifier", "weight": 2.0, "hidden_sizes": (16,)},
      "lm": {"name": "char_lm", "weight": 1.0, "width": 16, "base_width": 16},
      "quadratic": {"name": "quadratic", "weight": 1.0}})
  assert mixture.names == ("mlp", "lm", "quadratic")
  assert [f.name for f in mixture.families] == ["mlp_classifier", "char_lm", "quadratic"]
  assert mixture.slice_sizes(8) == (4, 2, 2)
  assert mixture.slice_sizes(7) == (3, 2, 2)  # Quotas 3.5, 1.75, 1.75: largest remainders win.
  assert mixture.slice_sizes(6) == (3, 2, 1)  # Quotas 3, 1.5, 1.5: the earlier family wins ties.
  with pytest.raises(ValueError, match="a population of 2 leaves no slot for quadratic of weight"):
    mixture.slice_sizes(2)


def test_bad_mixtures_name_the_member():
  with pytest.raises(ValueError, match=r"mixture member 'cnn': unknown task family 'conv'"):
    tasks.make_mixture({"cnn": {"name": "conv", "weight": 1.0}})
  with pytest.raises(ValueError, match=r"mixture member 'mlp' has no 'weight' setting"):
    tasks.make_mixture({"mlp": {"name": "mlp_classifier"}})
  with pytest.raises(ValueError, match=r"mixture member 'mlp': unknown dataset 'cifar'"):
    tasks.make_mixture({"mlp": {"name": "mlp_classifier", "weight": 1.0, "dataset": "cifar"}})
  with pytest.raises(ValueError, match="weights must be >= 0 with a positive sum"):
    tasks.Mixture((tasks.QuadraticFamily(),), (0.0,))


def test_loss_normalisation():
  losses, initial = jnp.array([2.0, 1.0, 0.5]), jnp.float32(2.0)
  np.testing.assert_allclose(objectives.normalize(losses, initial, "relative"), [1.0, 0.5, 0.25])
  np.testing.assert_allclose(objectives.normalize(losses, initial, "log_relative"),
                             np.log([1.0, 0.5, 0.25]), rtol=1e-6)
  np.testing.assert_array_equal(objectives.normalize(losses, initial, "none"), losses)
  assert np.isfinite(objectives.normalize(jnp.zeros(1), initial, "log_relative")).all()
  np.testing.assert_array_equal(objectives.clip(jnp.array([1.0, jnp.nan, jnp.inf, 30.0]), 20.0),
                                [1.0, 20.0, 20.0, 20.0])
  with pytest.raises(ValueError, match=r"unknown loss normalization 'z'; valid choices: \['none'"):
    objectives.normalize(losses, initial, "z")


def test_mixture_config_names_three_offline_families():
  from metatrain.config import load_config
  config = load_config("configs/mixture.py")
  assert config.task.name == tasks.MIXTURE
  mixture = tasks.make_mixture(config.task.members)
  assert len({family.name for family in mixture.families}) >= 3
  assert sum(mixture.slice_sizes(config.estimator.population)) == config.estimator.population
