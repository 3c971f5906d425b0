"""Classification tasks on an in-memory labelled dataset, shared by the MLP, CNN and ViT families.

A family (a subclass of ``ClassifierFamily``) fixes the data (``dataset``, ``data_dir``,
``train_split``, ``test_split``, ``image_size`` and ``image_normalization`` make its
``tasks.datasets.ImageData``), the network and its sizes; a task adds the per-task data variations
of ``tasks.variation``. The family's ``data()`` is the stored images and labels of both splits, on
device; a batch indexes them and preprocesses only the examples it drew. The loss is the mean
softmax cross-entropy ``-log softmax(f(s * x))[y]`` over a batch, with ``x`` the preprocessed
images, ``s`` the task's input scale and training labels ``y`` noised at the task's rate.
``evaluate`` uses the whole split, the task's input scale and the true labels.
"""

import dataclasses
import functools

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from tasks import datasets, mup, reparameterization, variation
from tasks.base import SPLITS


@reparameterization.param_scaled
@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierFamily:
  """Settings shared by classifier families; subclasses add ``network`` and ``at_base_width``."""

  dataset: str = "digits"
  data_dir: str = ""
  train_split: str = "train"
  test_split: str = "test"
  image_size: int = 0
  image_normalization: str = "unit"
  batch_size: int = 128
  parametrization: str = "sp"
  base_width: int = 32
  min_subset: float = 1.0
  label_noise: float = 0.0
  input_scale: float = 1.0

  def __post_init__(self):
    data = self.image_data  # Building it checks the data settings.
    mup.check_parametrization(self.parametrization)
    for name in ("batch_size", "base_width"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    variation.check_settings(self.min_subset, self.label_noise, self.input_scale)
    self.check_sizes(data.input_shape)

  @functools.cached_property
  def image_data(self) -> datasets.ImageData:
    return datasets.ImageData(self.dataset, self.data_dir, self.train_split, self.test_split,
                              self.image_size, self.image_normalization)

  def check_sizes(self, input_shape: tuple[int, ...]) -> None:
    """Raises ``ValueError`` if the network's sizes do not fit ``input_shape``."""
    raise NotImplementedError

  def network(self, inputs: jax.Array, num_classes: int) -> jax.Array:
    """The logits of the network on ``inputs``, inside ``hk.transform``."""
    raise NotImplementedError

  def at_base_width(self) -> "ClassifierFamily":
    """The same family with its width set to ``base_width`` (the μP reference model)."""
    raise NotImplementedError

  def data(self) -> dict[str, tuple[jax.Array, jax.Array]]:
    return self.image_data.arrays()

  def sample(self, key: jax.Array) -> dict[str, jax.Array]:
    num_train = len(self.data()["train"][1])
    return variation.sample(key, num_train, self.min_subset, self.label_noise, self.input_scale)

  def task(self, task_params: dict, data: dict) -> "ClassificationTask":
    return ClassificationTask(self, task_params, data)


@dataclasses.dataclass(frozen=True)
class ClassificationTask(mup.WidthScaledTask):
  """One classification task; see the module docstring."""

  family: ClassifierFamily
  task_params: dict
  data: dict

  @functools.cached_property
  def _model(self) -> hk.Transformed:
    return hk.without_apply_rng(hk.transform(
        lambda x: self.family.network(x, self.family.image_data.num_classes)))

  def init(self, key: jax.Array):
    return self._model.init(key, jnp.zeros((1,) + self.family.image_data.input_shape))

  def loss(self, params, batch) -> jax.Array:
    logits = self._model.apply(params, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

  def batch(self, key: jax.Array, split: str) -> dict[str, jax.Array]:
    images, labels = self._split(split)
    if split == "train":
      index, replace, classes = variation.training_draw(
          key, self.task_params, len(labels), self.family.batch_size,
          self.family.image_data.num_classes)
      batch_labels = jnp.where(replace, classes, labels[index])
    else:
      index = jax.random.randint(key, (self.family.batch_size,), 0, len(labels))
      batch_labels = labels[index]
    return {"inputs": self._inputs(images[index]), "labels": batch_labels}

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    images, labels = self._split(split)
    logits = self._model.apply(params, self._inputs(images))
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}

  def _inputs(self, images: jax.Array) -> jax.Array:
    """``s * x``: the stored ``images`` preprocessed and scaled by the task's input scale."""
    return self.task_params["input_scale"] * self.family.image_data.preprocess(images)

  def _split(self, split: str):
    if split not in SPLITS:
      raise ValueError(f"unknown split '{split}'; valid choices: {list(SPLITS)}")
    return self.data[split]
