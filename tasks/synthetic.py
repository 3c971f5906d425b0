"""Synthetic task families with no data set, for fast tests and cheap meta-training.

``teacher``: an MLP student (``tasks.networks.mlp``) learns a random teacher. Per task the teacher
is a one-hidden-layer tanh network ``t(x) = tanh(x W1) W2`` with ``W1 ~ N(0, 1/input_dim)``,
``W2 ~ N(0, 1/teacher_width)`` and a noise level ``sigma ~ U(0, noise)``. Inputs are
``x ~ N(0, I_input_dim)``; for ``kind="regression"`` the target is ``t(x) + sigma * n`` and the loss
the mean squared error ``1/(B d) |f(x) - y|^2``; for ``kind="classification"`` the label is
``argmax(t(x) + sigma * n)`` and the loss the cross-entropy. Batches of a split come from the key
folded with the split's index, so ``train`` and ``test`` batches are independent draws;
``evaluate`` uses ``eval_size`` examples from a fixed key per split.

``quadratic``: ``L(w) = 1/2 (w - w* - xi)^T Q diag(lambda) Q^T (w - w* - xi)`` with per task a random
rotation ``Q`` (QR of a Gaussian matrix), eigenvalues ``lambda`` log-uniform in
``[1/condition, 1]`` and a target ``w* ~ N(0, I)``; a batch is the noise ``xi ~ N(0, noise^2 I)``, so
gradients are noisy. ``evaluate`` gives the noise-free loss. The single parameter is a ``vector``.

Neither family reads a dataset: ``data()`` is ``{}``.
"""

import dataclasses
import functools
from typing import ClassVar

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from tasks import mup, networks, reparameterization
from tasks.base import SPLITS
from tasks.roles import roles_from_names

TEACHER_KINDS = ("regression", "classification")


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"unknown split '{split}'; valid choices: {list(SPLITS)}")


@reparameterization.param_scaled
@dataclasses.dataclass(frozen=True)
class TeacherFamily:
  """MLP students of ``hidden_sizes`` learning random teachers; see the module docstring."""

  kind: str = "regression"
  input_dim: int = 16
  num_outputs: int = 4
  teacher_width: int = 32
  hidden_sizes: tuple[int, ...] = (32,)
  base_width: int = 32
  parametrization: str = "sp"
  noise: float = 0.1
  batch_size: int = 64
  eval_size: int = 512

  name: ClassVar[str] = "teacher"

  def __post_init__(self):
    if self.kind not in TEACHER_KINDS:
      raise ValueError(f"unknown teacher kind '{self.kind}'; valid choices: {list(TEACHER_KINDS)}")
    mup.check_parametrization(self.parametrization)
    if not self.hidden_sizes or not all(isinstance(h, int) and h > 0 for h in self.hidden_sizes):
      raise ValueError(f"hidden_sizes must be one or more positive integers, "
                       f"got {self.hidden_sizes}")
    for name in ("input_dim", "num_outputs", "teacher_width", "base_width", "batch_size",
                 "eval_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.noise < 0:
      raise ValueError(f"noise must be >= 0, got {self.noise}")

  def sample(self, key: jax.Array) -> dict[str, jax.Array]:
    d, h, o = self.input_dim, self.teacher_width, self.num_outputs
    weights = jax.random.normal(key, (d * h + h * o + 1,))
    noise = self.noise * jax.scipy.special.ndtr(weights[-1])  # Uniform in [0, noise].
    return {"w1": weights[:d * h].reshape(d, h) / d**0.5,
            "w2": weights[d * h:-1].reshape(h, o) / h**0.5, "noise": noise}

  def data(self) -> dict:
    return {}

  def task(self, task_params: dict, data: dict) -> "TeacherTask":
    del data  # No dataset.
    return TeacherTask(self, task_params)


@dataclasses.dataclass(frozen=True)
class TeacherTask:
  """One student-teacher task; see the module docstring."""

  family: TeacherFamily
  task_params: dict

  def _model_at(self, hidden_sizes) -> hk.Transformed:
    f = self.family
    return hk.without_apply_rng(hk.transform(lambda x: networks.mlp(
        x, hidden_sizes, f.num_outputs, f.parametrization, f.base_width)))

  @functools.cached_property
  def _model(self) -> hk.Transformed:
    return self._model_at(self.family.hidden_sizes)

  def init(self, key: jax.Array):
    return self._model.init(key, jnp.zeros((1, self.family.input_dim)))

  def loss(self, params, batch) -> jax.Array:
    outputs = self._model.apply(params, batch["inputs"])
    if self.family.kind == "regression":
      return jnp.mean((outputs - batch["targets"]) ** 2)
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]).mean()

  def batch(self, key: jax.Array, split: str) -> dict[str, jax.Array]:
    return self._draw(key, split, self.family.batch_size)

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    return {"loss": self.loss(params, self._draw(jax.random.PRNGKey(0), split,
                                                 self.family.eval_size))}

  def roles(self, params):
    return roles_from_names(params)

  def lr_multipliers(self, params):
    """Per-parameter Adam learning-rate factors of ``tasks.mup`` (all 1 under SP)."""
    base_sizes = (self.family.base_width,) * len(self.family.hidden_sizes)
    base = jax.eval_shape(self._model_at(base_sizes).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, self.family.input_dim)))
    return mup.lr_multipliers(params, base, self.family.parametrization)

  def _draw(self, key: jax.Array, split: str, size: int) -> dict[str, jax.Array]:
    _check_split(split)
    d, o = self.family.input_dim, self.family.num_outputs
    draws = jax.random.normal(jax.random.fold_in(key, SPLITS.index(split)), (size, d + o))
    inputs = draws[:, :d]
    clean = jnp.tanh(inputs @ self.task_params["w1"]) @ self.task_params["w2"]
    noisy = clean + self.task_params["noise"] * draws[:, d:]
    targets = noisy if self.family.kind == "regression" else jnp.argmax(noisy, -1)
    return {"inputs": inputs, "targets": targets}


@reparameterization.param_scaled
@dataclasses.dataclass(frozen=True)
class QuadraticFamily:
  """Noisy, rotated, ill-conditioned quadratics in ``dim`` dimensions; see the module docstring."""

  dim: int = 16
  condition: float = 100.0
  noise: float = 0.1

  name: ClassVar[str] = "quadratic"

  def __post_init__(self):
    if self.dim < 1:
      raise ValueError(f"dim must be positive, got {self.dim}")
    if self.condition < 1:
      raise ValueError(f"condition must be >= 1, got {self.condition}")
    if self.noise < 0:
      raise ValueError(f"noise must be >= 0, got {self.noise}")

  def sample(self, key: jax.Array) -> dict[str, jax.Array]:
    draws = jax.random.normal(key, (self.dim + 2, self.dim))
    rotation, _ = jnp.linalg.qr(draws[:self.dim])
    uniform = jax.scipy.special.ndtr(draws[self.dim])  # Standard normal -> uniform in (0, 1).
    return {"rotation": rotation, "eigenvalues": jnp.exp(-jnp.log(self.condition) * uniform),
            "target": draws[self.dim + 1]}

  def data(self) -> dict:
    return {}

  def task(self, task_params: dict, data: dict) -> "QuadraticTask":
    del data  # No dataset.
    return QuadraticTask(self, task_params)


@dataclasses.dataclass(frozen=True)
class QuadraticTask:
  """One noisy quadratic; see the module docstring."""

  family: QuadraticFamily
  task_params: dict

  def init(self, key: jax.Array):
    return {"quadratic": {"w": jax.random.normal(key, (self.family.dim,))}}

  def loss(self, params, batch) -> jax.Array:
    offset = params["quadratic"]["w"] - self.task_params["target"] - batch["noise"]
    projected = offset @ self.task_params["rotation"]
    return 0.5 * jnp.sum(self.task_params["eigenvalues"] * projected**2)

  def batch(self, key: jax.Array, split: str) -> dict[str, jax.Array]:
    _check_split(split)
    return {"noise": self.family.noise * jax.random.normal(key, (self.family.dim,))}

  def evaluate(self, params, split: str) -> dict[str, jax.Array]:
    _check_split(split)
    return {"loss": self.loss(params, {"noise": jnp.zeros((self.family.dim,))})}

  def roles(self, params):
    return roles_from_names(params)

  def lr_multipliers(self, params):
    """No width: every factor is 1."""
    return jax.tree.map(lambda _: 1.0, params)
