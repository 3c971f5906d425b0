"""A family of MLP classifiers (haiku) on an in-memory dataset.

Every task of the family has the same architecture and data; tasks differ in their initialisation
and the order of their batches, both drawn from the keys the caller passes to ``init`` and
``batch``. The loss is the mean softmax cross-entropy.
"""

import dataclasses
import functools
from typing import ClassVar

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from tasks import datasets
from tasks.base import SPLITS


@dataclasses.dataclass(frozen=True)
class MLPClassifierFamily:
  """MLP classifiers of one width and depth on ``dataset``, trained on batches of ``batch_size``."""

  dataset: str = "digits"
  hidden_sizes: tuple[int, ...] = (32,)
  batch_size: int = 128

  name: ClassVar[str] = "mlp_classifier"

  def __post_init__(self):
    if self.dataset not in datasets.DATASETS:
      raise ValueError(f"unknown dataset '{self.dataset}'; valid choices: {list(datasets.DATASETS)}")
    if not all(isinstance(h, int) and h > 0 for h in self.hidden_sizes):
      raise ValueError(f"hidden_sizes must be positive integers, got {self.hidden_sizes}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")

  def sample(self, key: jax.Array) -> dict:
    """Tasks of this family differ only through the keys of ``init`` and ``batch``."""
    del key
    return {}

  def task(self, task_params: dict) -> "MLPClassifier":
    del task_params
    return MLPClassifier(self)


@dataclasses.dataclass(frozen=True)
class MLPClassifier:
  """One MLP classification task; see ``MLPClassifierFamily``."""

  family: MLPClassifierFamily

  @functools.cached_property
  def _data(self) -> dict[str, tuple[jax.Array, jax.Array]]:
    return datasets.load(self.family.dataset)

  @functools.cached_property
  def _num_classes(self) -> int:
    return int(self._data["train"][1].max()) + 1

  @functools.cached_property
  def _model(self) -> hk.Transformed:
    sizes = tuple(self.family.hidden_sizes) + (self._num_classes,)
    return hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP(sizes)(x)))

  def init(self, key: jax.Array):
    inputs = self._data["train"][0]
    return self._model.init(key, jnp.zeros((1,) + inputs.shape[1:], inputs.dtype))

  def loss(self, params, batch) -> jax.Array:
    logits = self._model.apply(params, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

  def batch(self, key: jax.Array, split: str) -> dict[str, jax.Array]:
    inputs, labels = self._split(split)
    index = jax.random.randint(key, (self.family.batch_size,), 0, len(labels))
    return {"inputs": jnp.asarray(inputs)[index], "labels": jnp.asarray(labels)[index]}

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    inputs, labels = self._split(split)
    logits = self._model.apply(params, jnp.asarray(inputs))
    labels = jnp.asarray(labels)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(),
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}

  def roles(self, params):
    """The first layer's weights are ``input``, the last's ``output``, biases ``vector``."""
    layers = sorted(params, key=lambda name: int(name.rsplit("_", 1)[-1]))
    role_of_layer = {name: "hidden" for name in layers}
    role_of_layer[layers[0]], role_of_layer[layers[-1]] = "input", "output"
    return {name: {"w": role_of_layer[name], "b": "vector"} for name in params}

  def _split(self, split: str):
    if split not in SPLITS:
      raise ValueError(f"unknown split '{split}'; valid choices: {list(SPLITS)}")
    return self._data[split]
