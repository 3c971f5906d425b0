"""A family of causal character-level Transformer LMs (``tasks.transformer.char_lm``) on a text corpus.

``corpus``, ``data_dir``, ``train_split`` and ``test_split`` make the family's
``tasks.text.TextData``; the family's ``data()`` is the tokens of both splits, on device.

A batch is ``batch_size`` windows of ``sequence_length + 1`` consecutive tokens; the loss is the mean
next-token cross-entropy ``-1/(B T) sum_{b,t} log p(x_{b,t+1} | x_{b,<=t})`` in nats. A task draws
``subset_start`` and ``subset_size`` (``tasks.variation``): its training windows start in that
cyclic range of window positions. ``evaluate`` uses ``eval_windows`` fixed windows spread evenly
over the split (the whole split would cost far more than a training step).
"""

import dataclasses
import functools
from typing import ClassVar

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from tasks import mup, reparameterization, text, transformer, variation
from tasks.base import SPLITS


@reparameterization.param_scaled
@dataclasses.dataclass(frozen=True)
class CharLMFamily:
  """Causal LMs of ``depth`` blocks of ``width`` and ``num_heads`` heads on ``corpus``."""

  corpus: str = "python_docs"
  width: int = 32
  depth: int = 2
  num_heads: int = 2
  base_width: int = 32
  parametrization: str = "sp"
  sequence_length: int = 32
  batch_size: int = 16
  min_subset: float = 1.0
  eval_windows: int = 64
  data_dir: str = ""
  train_split: str = "train"
  test_split: str = "test"

  name: ClassVar[str] = "char_lm"

  def __post_init__(self):
    _ = self.text_data  # Building it checks the data settings.
    mup.check_parametrization(self.parametrization)
    for name in ("width", "depth", "num_heads", "base_width", "sequence_length", "batch_size",
                 "eval_windows"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    transformer.check_heads(self.width, self.num_heads, self.base_width)
    variation.check_settings(self.min_subset, 0.0, 1.0)

  @functools.cached_property
  def text_data(self) -> text.TextData:
    return text.TextData(self.corpus, self.data_dir, self.train_split, self.test_split)

  def data(self) -> dict[str, jax.Array]:
    return self.text_data.arrays()

  def sample(self, key: jax.Array) -> dict[str, jax.Array]:
    num_windows = len(self.data()["train"]) - self.sequence_length
    subset = variation.sample(key, num_windows, self.min_subset)
    return {name: subset[name] for name in ("subset_start", "subset_size")}

  def task(self, task_params: dict, data: dict) -> "CharLM":
    return CharLM(self, task_params, data)

  def at_base_width(self) -> "CharLMFamily":
    return dataclasses.replace(self, width=self.base_width)


@dataclasses.dataclass(frozen=True)
class CharLM(mup.WidthScaledTask):
  """One character-level language-modelling task; see the module docstring."""

  family: CharLMFamily
  task_params: dict
  data: dict

  @functools.cached_property
  def _model(self) -> hk.Transformed:
    f = self.family
    return hk.without_apply_rng(hk.transform(lambda tokens: transformer.char_lm(
        tokens, text.VOCAB_SIZE, f.width, f.depth, f.num_heads, f.parametrization, f.base_width)))

  def init(self, key: jax.Array):
    return self._model.init(key, jnp.zeros((1, self.family.sequence_length), jnp.int32))

  def loss(self, params, batch) -> jax.Array:
    return self._losses(params, batch["tokens"])[0]

  def batch(self, key: jax.Array, split: str) -> dict[str, jax.Array]:
    tokens = self._split(split)
    num_windows = len(tokens) - self.family.sequence_length
    if split == "train":
      starts = variation.subset_indices(key, self.task_params, num_windows,
                                        self.family.batch_size)
    else:
      starts = jax.random.randint(key, (self.family.batch_size,), 0, num_windows)
    return {"tokens": self._windows(tokens, starts)}

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    tokens = self._split(split)
    starts = jnp.linspace(0, len(tokens) - self.family.sequence_length - 1,
                          self.family.eval_windows).astype(jnp.int32)
    loss, accuracy = self._losses(params, self._windows(tokens, starts))
    return {"loss": loss, "accuracy": accuracy}

  def _losses(self, params, windows: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = self._model.apply(params, windows[:, :-1])
    targets = windows[:, 1:]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == targets)

  def _windows(self, tokens: jax.Array, starts: jax.Array) -> jax.Array:
    length = self.family.sequence_length + 1
    take = lambda start: jax.lax.dynamic_slice(tokens, (start,), (length,))
    return jax.vmap(take)(starts).astype(jnp.int32)

  def _split(self, split: str) -> jax.Array:
    if split not in SPLITS:
      raise ValueError(f"unknown split '{split}'; valid choices: {list(SPLITS)}")
    return self.data[split]
