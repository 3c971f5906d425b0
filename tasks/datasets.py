"""Labelled image datasets, held on device as stored and preprocessed per batch.

Datasets, by name (all have 10 classes):

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, pixels in [0, 16]). It
  ships inside the scikit-learn wheel, so it needs no network. A fixed permutation (seed 0) keeps
  20% of the images as the ``test`` split and the rest, in that shuffled order, as ``train``.
- ``mnist``: TFDS ``mnist``, 28x28x1 handwritten digits; splits ``train`` (60000), ``test`` (10000).
- ``fashion_mnist``: TFDS ``fashion_mnist``, 28x28x1 Zalando clothing images; splits ``train``
  (60000), ``test`` (10000).
- ``cifar10``: TFDS ``cifar10``, 32x32x3 colour images; splits ``train`` (50000), ``test`` (10000).

TFDS datasets are read from ``data_dir`` by ``tasks.tfds_data`` (TFDS's own reader, no TensorFlow);
they must have been prepared there once, as that module describes. Every split is stored in a fixed
random order, so any contiguous slice of it is a random subset (``tasks.variation`` relies on it).

``ImageData`` names a dataset, the data directory, the dataset splits a task trains (``train``) and
is evaluated (``test``) on, and the preprocessing. ``ImageData.arrays()`` holds each split on device
as stored: uint8 images ``[N, height, width, channels]`` (4 times smaller than float32) and int32
labels, read and put there once per process. ``ImageData.preprocess`` makes float32 inputs of
stored images (inside a jitted step, of the batch just indexed from them), in order:

1. ``image_size > 0``: resize to ``image_size x image_size`` (``jax.image.resize``, linear,
   antialiased when shrinking); ``0`` keeps the dataset's own size;
2. scale pixels to [0, 1] (divide by the largest pixel value: 16 for digits, 255 otherwise);
3. ``normalization``: ``"unit"`` stops here; ``"standardize"`` subtracts each channel's mean and
   divides by its standard deviation, both over the training split after steps 1 and 2 (computed
   once, on the host).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from tasks import tfds_data
from tasks.base import on_device

IMAGE_NORMALIZATIONS = ("unit", "standardize")
_DIGITS_TEST_FRACTION = 0.2
Arrays = tuple[np.ndarray, np.ndarray]  # Images [N, height, width, channels] and labels int32 [N].


@functools.lru_cache(maxsize=None)
def _digits() -> dict[str, Arrays]:
  from sklearn.datasets import load_digits  # Imported here: only this dataset needs scikit-learn.
  digits = load_digits()
  order = np.random.RandomState(0).permutation(len(digits.target))
  num_test = int(round(_DIGITS_TEST_FRACTION * len(order)))
  images, labels = digits.images[..., None].astype(np.uint8), digits.target.astype(np.int32)
  return {split: (images[index], labels[index])
          for split, index in (("train", order[num_test:]), ("test", order[:num_test]))}


@dataclasses.dataclass(frozen=True)
class _Source:
  """Where a dataset comes from and the shape, pixel range and classes of its examples."""

  shape: tuple[int, int, int]
  splits: tuple[str, ...]
  max_pixel: float
  num_classes: int
  tfds_name: str = ""  # Empty for digits, which ships offline.


SOURCES = {
    "digits": _Source((8, 8, 1), ("train", "test"), 16.0, 10),
    "mnist": _Source((28, 28, 1), ("train", "test"), 255.0, 10, "mnist"),
    "fashion_mnist": _Source((28, 28, 1), ("train", "test"), 255.0, 10, "fashion_mnist"),
    "cifar10": _Source((32, 32, 3), ("train", "test"), 255.0, 10, "cifar10"),
}
DATASETS = tuple(SOURCES)


def _read(name: str, split: str, data_dir: str) -> Arrays:
  """The stored images and labels of ``split`` of dataset ``name``, on the host."""
  tfds_name = SOURCES[name].tfds_name
  if not tfds_name:
    return _digits()[split]
  arrays = tfds_data.read(tfds_name, split, data_dir, ("image", "label"))
  return arrays["image"], arrays["label"].astype(np.int32)


_read_on_device = on_device(_read)


def check_dataset(name: str) -> None:
  if name not in SOURCES:
    raise ValueError(f"unknown dataset '{name}'; valid choices: {list(DATASETS)}")


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A dataset, where it is, which splits a task uses and how they are preprocessed.

  Construction checks every setting and, for a TFDS dataset, that it is prepared in ``data_dir``.
  """

  name: str = "digits"
  data_dir: str = ""
  train_split: str = "train"
  test_split: str = "test"
  image_size: int = 0
  normalization: str = "unit"

  def __post_init__(self):
    check_dataset(self.name)
    source = SOURCES[self.name]
    for setting in ("train_split", "test_split"):
      if getattr(self, setting) not in source.splits:
        raise ValueError(f"unknown {setting} '{getattr(self, setting)}' for dataset '{self.name}'; "
                         f"valid choices: {list(source.splits)}")
    if not isinstance(self.image_size, int) or self.image_size < 0:
      raise ValueError(f"image_size must be a positive integer, or 0 to keep the dataset's size, "
                       f"got {self.image_size}")
    if self.normalization not in IMAGE_NORMALIZATIONS:
      raise ValueError(f"unknown image normalization '{self.normalization}'; valid choices: "
                       f"{list(IMAGE_NORMALIZATIONS)}")
    if source.tfds_name:
      tfds_data.check_prepared(source.tfds_name, self.data_dir)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    """One preprocessed example's shape, known without loading the data."""
    height, width, channels = SOURCES[self.name].shape
    if self.image_size:
      height = width = self.image_size
    return height, width, channels

  @property
  def num_classes(self) -> int:
    return SOURCES[self.name].num_classes

  def arrays(self) -> dict[str, tuple[jax.Array, jax.Array]]:
    """``{"train": (images uint8, labels int32), "test": ...}`` on device, as stored."""
    return {"train": _read_on_device(self.name, self.train_split, self.data_dir),
            "test": _read_on_device(self.name, self.test_split, self.data_dir)}

  def preprocess(self, images: jax.Array) -> jax.Array:
    """The float32 inputs of stored ``images`` ``[N, height, width, channels]`` (steps 1-3)."""
    inputs = _scaled(self, images)
    if self.normalization == "standardize":
      mean, std = _statistics(self)
      inputs = (inputs - mean) / std
    return inputs


def _scaled(data: ImageData, images: jax.Array) -> jax.Array:
  """Steps 1 and 2 of the preprocessing: resized and scaled to [0, 1], float32."""
  inputs = images.astype(jnp.float32)
  if inputs.shape[1:] != data.input_shape:
    inputs = jax.image.resize(inputs, (len(inputs),) + data.input_shape, "linear", antialias=True)
  return inputs / SOURCES[data.name].max_pixel


@functools.lru_cache(maxsize=None)
def _statistics(data: ImageData) -> tuple[np.ndarray, np.ndarray]:
  """Each channel's mean and standard deviation over the scaled training split (float64 sums)."""
  with jax.ensure_compile_time_eval():  # Concrete values, even if first called while tracing.
    inputs = np.asarray(_scaled(data, data.arrays()["train"][0]))
  return tuple(stat(inputs, (0, 1, 2), dtype=np.float64).astype(np.float32)
               for stat in (np.mean, np.std))


def load(name: str, **settings) -> dict[str, Arrays]:
  """The preprocessed ``{"train": (inputs float32, labels int32), "test": ...}`` of
  ``ImageData(name, **settings)`` on the host, to look at (tasks preprocess each batch on device);
  ``load("digits")`` is the offline default."""
  data = ImageData(name, **settings)
  return {split: (np.asarray(data.preprocess(images)), np.asarray(labels))
          for split, (images, labels) in data.arrays().items()}
