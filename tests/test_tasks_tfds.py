"""TFDS datasets, read without TensorFlow from a data directory, through the loaders users call.

No dataset can be downloaded here, so the fixture prepares small stand-ins for ``mnist``,
``fashion_mnist``, ``cifar10`` and ``tiny_shakespeare`` with TFDS's own machinery: a subclass of the
installed builder (same name, version and features) whose examples come from this file, written by
``download_and_prepare`` as array_record files into a temporary data directory. Loading them back
goes through the same ``tfds.builder(...).as_data_source`` path as the real datasets.
"""

import io
import json
import re

import jax
import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

import tasks
from metatrain.config import ConfigError, build_task_family
from tasks import datasets, text, tfds_data
from test_tasks_families import train_losses

SHAKESPEARE = {"train": "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40,
               "validation": "All:\nSpeak, speak.\n" * 20, "test": "You are all resolved.\n" * 20}


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of ``image`` (TFDS encodes arrays with TensorFlow, so the test encodes them)."""
  buffer = io.BytesIO()
  PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()


def _images(num: int, shape: tuple[int, int, int], seed: int) -> list[dict]:
  """Noisy images whose class ``k`` is a bright band at rows ``2k, 2k + 1``."""
  rng = np.random.RandomState(seed)
  examples = []
  for i in range(num):
    image = rng.randint(0, 60, shape).astype(np.uint8)
    image[2 * (i % 10):2 * (i % 10) + 2] = 255
    examples.append({"image": _png(image), "label": i % 10})
  return examples


def _prepare(name: str, data_dir: str, splits: dict[str, list[dict]]) -> None:
  """Writes ``splits`` as the installed TFDS builder ``name`` would, in the array_record format."""

  class StandIn(tfds.builder_cls(name), skip_registration=True):
    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(examples) for split, examples in splits.items()}

    def _generate_examples(self, examples):
      yield from enumerate(examples)

  StandIn.name = name
  StandIn(data_dir=data_dir, file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  tfds.disable_progress_bar()
  path = str(tmp_path_factory.mktemp("tensorflow_datasets"))
  for name in ("mnist", "fashion_mnist"):
    _prepare(name, path, {"train": _images(200, (28, 28, 1), 0),
                          "test": _images(50, (28, 28, 1), 1)})
  cifar = {split: _images(num, (32, 32, 3), num) for split, num in (("train", 100), ("test", 30))}
  _prepare("cifar10", path, {split: [dict(e, id=f"{split}_{i}") for i, e in enumerate(examples)]
                             for split, examples in cifar.items()})
  _prepare("tiny_shakespeare", path, {split: [{"text": t}] for split, t in SHAKESPEARE.items()})
  return path


def _trains(family, steps=30, learning_rate=1e-2):
  """Batch losses of ``steps`` Adam steps on a task of ``family`` from its initial parameters."""
  def run(key, data):
    task = family.task(family.sample(key), data)
    return train_losses(task, task.init(key), learning_rate, steps, key)[1]

  return np.asarray(jax.jit(run)(jax.random.PRNGKey(0), family.data()))


def test_mnist_loads_as_arrays_and_an_mlp_trains_on_it(data_dir):
  data = datasets.ImageData("mnist", data_dir, image_size=14)
  stored = data.arrays()["train"][0]  # On device as stored; batches are resized as drawn.
  assert stored.dtype == np.uint8 and stored.shape == (200, 28, 28, 1)
  arrays = datasets.load("mnist", data_dir=data_dir, image_size=14)
  (train_x, train_y), (test_x, test_y) = arrays["train"], arrays["test"]
  assert train_x.shape == (200, 14, 14, 1) and test_x.shape == (50, 14, 14, 1) == (
      (50,) + data.input_shape)
  assert train_x.dtype == np.float32 and 0 <= train_x.min() and train_x.max() <= 1
  assert train_y.dtype == np.int32 and sorted(set(train_y.tolist())) == list(range(10))
  assert not np.array_equal(train_y[:10], np.arange(10))  # TFDS stores the split shuffled.
  bands = train_x[..., 0].mean(2).argmax(1)  # The bright band survives the resize.
  np.testing.assert_array_equal(bands, train_y)
  native = datasets.load("mnist", data_dir=data_dir, train_split="test")["train"][0]
  assert native.shape == (50, 28, 28, 1)  # train_split picks the split a task trains on.

  family = tasks.MLPClassifierFamily(dataset="mnist", data_dir=data_dir, image_size=16,
                                     hidden_sizes=(32,), batch_size=8)
  batch = jax.eval_shape(lambda key: family.task(family.sample(key), family.data()).batch(
      key, "train"), jax.random.PRNGKey(0))  # Loads the data while tracing.
  assert batch["inputs"].shape == (8, 16, 16, 1) and batch["labels"].shape == (8,)
  losses = _trains(family)
  assert np.all(np.isfinite(losses)) and losses[-5:].mean() < 0.5 * losses[:5].mean()


def test_cifar10_is_standardized_per_channel(data_dir):
  train_x = datasets.load("cifar10", data_dir=data_dir, normalization="standardize")["train"][0]
  assert train_x.shape == (100, 32, 32, 3)
  np.testing.assert_allclose(train_x.mean((0, 1, 2), dtype=np.float64), 0, atol=1e-5)
  np.testing.assert_allclose(train_x.std((0, 1, 2), dtype=np.float64), 1, atol=1e-5)


def test_tiny_shakespeare_is_a_corpus_for_the_char_lm(data_dir):
  tokens = text.load("tiny_shakespeare", data_dir=data_dir, test_split="validation")
  np.testing.assert_array_equal(tokens["train"], text.encode(SHAKESPEARE["train"]))
  assert text.decode(tokens["test"]) == SHAKESPEARE["validation"]
  family = tasks.CharLMFamily(corpus="tiny_shakespeare", data_dir=data_dir, sequence_length=16,
                              batch_size=8)
  batch = jax.eval_shape(lambda key: family.task(family.sample(key), family.data()).batch(
      key, "test"), jax.random.PRNGKey(0))
  assert batch["tokens"].shape == (8, 17)


# Compiling these trainings takes 5-20 s each on a busy 2-core CPU.
@pytest.mark.slow
@pytest.mark.parametrize("make_family", [
    lambda d: tasks.CNNClassifierFamily(dataset="cifar10", data_dir=d, image_size=16,
                                        image_normalization="standardize", width=8, depth=1,
                                        batch_size=16),
    lambda d: tasks.ViTClassifierFamily(dataset="fashion_mnist", data_dir=d, image_size=16,
                                        patch_size=4, width=16, depth=1, base_width=16,
                                        batch_size=16),
    lambda d: tasks.CharLMFamily(corpus="tiny_shakespeare", data_dir=d, width=16, depth=1,
                                 base_width=16, sequence_length=16, batch_size=8)],
    ids=["cnn_cifar10", "vit_fashion_mnist", "char_lm_tiny_shakespeare"])
def test_adam_trains_families_on_tfds_data(data_dir, make_family):
  losses = _trains(make_family(data_dir))
  assert np.all(np.isfinite(losses)) and losses[-5:].mean() < 0.8 * losses[:5].mean()


def test_a_missing_dataset_names_itself_the_directory_and_the_command(tmp_path, monkeypatch):
  empty = str(tmp_path / "empty")
  command = f"tfds build fashion_mnist --file_format=array_record --data_dir={empty}`"
  message = f"'fashion_mnist' is not prepared in the data directory {empty} "
  with pytest.raises(tfds_data.DatasetNotPreparedError,
                     match=re.escape(message) + ".*" + re.escape(command)):
    datasets.ImageData("fashion_mnist", empty)
  monkeypatch.setenv("TFDS_DATA_DIR", empty)  # TFDS's default directory, when data_dir is empty.
  with pytest.raises(ValueError, match=re.escape(
      f"'tiny_shakespeare' is not prepared in the data directory {empty} ")):
    tasks.CharLMFamily(corpus="tiny_shakespeare")
  config = ConfigDict({"task": {"name": "vit_classifier", "dataset": "cifar10", "data_dir": empty}})
  with pytest.raises(ConfigError, match=re.escape(
      "bad settings for task family 'vit_classifier': TFDS dataset 'cifar10' is not prepared in "
      f"the data directory {empty} ")):
    build_task_family(config)


def test_a_dataset_prepared_as_tfrecord_says_how_to_prepare_it_again(tmp_path):
  path = str(tmp_path)
  _prepare("mnist", path, {"train": _images(10, (28, 28, 1), 0)})
  info_file = tmp_path / "mnist" / str(tfds.builder_cls("mnist").VERSION) / "dataset_info.json"
  info = json.loads(info_file.read_text())
  info_file.write_text(json.dumps(dict(info, fileFormat="tfrecord")))  # What `tfds build` writes.
  with pytest.raises(tfds_data.DatasetNotPreparedError,
                     match=r"prepared as \['tfrecord'\] files, which only TensorFlow reads"):
    datasets.ImageData("mnist", path)


def test_bad_data_settings_name_the_valid_choices(data_dir):
  with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; valid choices: \['digits', "
                     r"'mnist', 'fashion_mnist', 'cifar10'\]"):
    tasks.MLPClassifierFamily(dataset="svhn")
  with pytest.raises(ValueError, match=r"unknown train_split 'validation' for dataset 'mnist'; "
                     r"valid choices: \['train', 'test'\]"):
    tasks.MLPClassifierFamily(dataset="mnist", data_dir=data_dir, train_split="validation")
  with pytest.raises(ValueError, match=r"unknown test_split 'dev' for corpus 'tiny_shakespeare'; "
                     r"valid choices: \['train', 'validation', 'test'\]"):
    tasks.CharLMFamily(corpus="tiny_shakespeare", data_dir=data_dir, test_split="dev")
  with pytest.raises(ValueError, match=r"unknown image normalization 'minmax'; valid choices: "
                     r"\['unit', 'standardize'\]"):
    tasks.CNNClassifierFamily(image_normalization="minmax")
  with pytest.raises(ValueError, match="image_size must be a positive integer, or 0"):
    tasks.MLPClassifierFamily(image_size=-8)
  tasks.ViTClassifierFamily(dataset="mnist", data_dir=data_dir, patch_size=7)  # 7 divides 28.
  with pytest.raises(ValueError, match=r"patch_size \(7\) must divide the image size \(16\)"):
    tasks.ViTClassifierFamily(dataset="mnist", data_dir=data_dir, patch_size=7, image_size=16)
