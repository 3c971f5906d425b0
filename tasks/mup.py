"""Standard (SP) and maximal-update (μP) parametrisation of the models' weights.

Every weight has a role (``tasks.roles``) and a width multiplier ``m = fan_in / base_fan_in``: how
much wider its input is than in the same model at the family's base width (``m = 1`` there, so SP and
μP agree at the base width). Following Tensor Programs V (Yang et al. 2022, table 3) and μLO
(Therien et al. 2024), with ``fan_in`` the number of inputs of one output unit:

    role     init std             forward multiplier   Adam learning rate
    input    1 / sqrt(fan_in)     1                    lr
    hidden   1 / sqrt(fan_in)     1                    lr / m   (μP only; SP keeps lr)
    output   SP 1 / sqrt(fan_in)  SP 1                 lr
             μP 0                 μP 1 / m
    vector   biases 0, norm scales 1                   lr

and attention logits ``q.k / sqrt(d_head)`` (SP) or ``q.k * sqrt(base_d_head) / d_head`` (μP).
With these, a hidden activation's coordinates and their change after an Adam step stay of order one
as the width grows under μP; under SP the change grows like ``m``. The ``lr / m`` column is the
optimizer's part: ``lr_multipliers`` returns it per parameter and ``mup_adam`` applies it (a
μLO-style learned optimizer scales its hidden updates the same way).
"""

import math

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from tasks.roles import roles_from_names

PARAMETRIZATIONS = ("sp", "mup")
FAN_IN_INIT = hk.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")  # std 1/sqrt(fan_in)


def check_parametrization(parametrization: str) -> None:
  if parametrization not in PARAMETRIZATIONS:
    raise ValueError(f"unknown parametrization '{parametrization}'; valid choices: "
                     f"{list(PARAMETRIZATIONS)}")


def fan_in(shape) -> int:
  """Inputs per output unit of a weight whose last axis is its outputs (dense or convolution)."""
  return math.prod(shape[:-1])


class Dense(hk.Module):
  """``y = multiplier * x @ w + b`` with ``w`` initialised and multiplied as its role asks.

  The module is named after its role (``name`` must start with it) so that ``tasks.roles`` can read
  the role from the parameters alone. ``width_mult`` (``m``) only matters for μP output layers.
  """

  def __init__(self, size: int, role: str, parametrization: str, name: str,
               width_mult: float = 1.0):
    super().__init__(name=name)
    if not name.startswith(role):
      raise ValueError(f"a {role} layer's name must start with '{role}', got '{name}'")
    self.size, self.role, self.parametrization, self.width_mult = size, role, parametrization, width_mult

  def __call__(self, x: jax.Array) -> jax.Array:
    readout = self.role == "output" and self.parametrization == "mup"
    w_init = jnp.zeros if readout else FAN_IN_INIT
    w = hk.get_parameter("w", (x.shape[-1], self.size), x.dtype, w_init)
    b = hk.get_parameter("b", (self.size,), x.dtype, jnp.zeros)
    multiplier = 1.0 / self.width_mult if readout else 1.0
    return multiplier * (x @ w) + b


def attention_scale(d_head: int, base_d_head: int, parametrization: str) -> float:
  """The factor of the attention logits ``q.k``: ``1/sqrt(d_head)`` (SP), ``sqrt(base)/d_head`` (μP)."""
  if parametrization == "mup":
    return math.sqrt(base_d_head) / d_head
  return 1.0 / math.sqrt(d_head)


def lr_multipliers(params, base_params, parametrization: str):
  """Per-parameter learning-rate factors: ``1/m = base_fan_in / fan_in`` for μP hidden weights, else 1.

  ``base_params`` are the parameters (or their shapes, from ``jax.eval_shape``) of the same model at
  its base width; both trees have the same structure because width never changes depth.
  """
  check_parametrization(parametrization)

  def multiplier(role, param, base):
    if parametrization == "mup" and role == "hidden":
      return fan_in(base.shape) / fan_in(param.shape)
    return 1.0

  return jax.tree.map(multiplier, roles_from_names(params), params, base_params)


def mup_adam(learning_rate: float, multipliers, **adam_kwargs) -> optax.GradientTransformation:
  """Adam whose step for each parameter is multiplied by its entry of ``multipliers``.

  ``u = -learning_rate * multiplier * adam_direction``; with ``lr_multipliers(...)`` this is the
  μP Adam of Tensor Programs V (hidden weights at ``lr / m``).
  """
  return optax.chain(
      optax.scale_by_adam(**adam_kwargs),
      optax.stateless(lambda updates, params=None: jax.tree.map(
          lambda u, m: u * m, updates, multipliers)),
      optax.scale_by_learning_rate(learning_rate))


class WidthScaledTask:
  """Roles and μP learning-rate factors for a task with ``family``, ``task_params`` and ``data``
  fields, whose family has ``parametrization`` and ``at_base_width()`` (the same model at the μP
  base width)."""

  def roles(self, params):
    return roles_from_names(params)

  def lr_multipliers(self, params):
    """Per-parameter Adam learning-rate factors of ``lr_multipliers`` (all 1 under SP)."""
    base = self.family.at_base_width().task(self.task_params, self.data)
    return lr_multipliers(params, jax.eval_shape(base.init, jax.random.PRNGKey(0)),
                          self.family.parametrization)
