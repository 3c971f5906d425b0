"""μLO: the per-parameter MLP learned optimizers made width-aware as in μP (Thérien et al., 2024).

The network of the learned optimizer, its features and its accumulators are those of ``MLPLOpt`` /
``AdafacMLPLOpt``; only its update of each parameter tensor ``W`` is multiplied by a factor that
depends on the tensor's role (``lopt.roles``) and fan-in ``n = prod(shape[:-1])``:

    u_W <- s_W * u_W,      s_W = base_fan_in / n   if W is hidden,
                           s_W = 1                 if W is input, output or vector.

Why: the features are RMS-normalised over each tensor, so every coordinate of ``u_W`` is of order
``step_mult`` whatever the width, like Adam's normalised direction. For a hidden matrix such an
update is correlated with the layer's input ``x`` (coordinates of order one), so it moves the
layer's output ``u_W^T x`` by order ``n`` per coordinate, and its spectral norm relative to ``W``'s
grows like ``n``. Dividing by ``n`` keeps both of order one, as μP's Adam does with ``lr / m`` for
hidden weights (Tensor Programs V, table 3; ``tasks.mup``). An input matrix has a fixed fan-in, so
its update needs no factor. The readout of a μP model is divided by its width multiplier in the
forward pass (the model's job, not the optimizer's), so the output update keeps scale 1 too; biases
and norm parameters are vectors of order-one coordinates and keep scale 1.

This is the rule of the public μLO code, which multiplies hidden updates by ``hidden_lr_mult / n``
(with ``hidden_lr_mult = 1``) and leaves input, output and vector updates alone (its readout's
``1 / n`` lives in the model). ``base_fan_in`` plays ``hidden_lr_mult``: a hidden tensor of fan-in
``base_fan_in`` gets the SP LO's update, so an untrained ``theta`` trains at that width as Adam
does, and ``base_fan_in = 1`` is the paper's constant. The default, 32, is the base width of this
project's task families. A convolution's fan-in counts its window (``3 * 3 * channels``), as in μP.

Roles reach the optimizer through ``init(theta, params, num_steps, roles)`` (a pytree of role
strings like ``params``; ``lopt.infer_roles(params)`` when ``None``). The factors ``s_W`` are kept
in the optimizer state as float32 scalars, one per tensor, so the state stays a pytree of arrays
that vmaps, shards and checkpoints; the accumulators see the raw gradients, as in the base
optimizer.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from lopt.adafac_mlp_lopt import AdafacMLPLOpt
from lopt.mlp_lopt import MLPLOpt
from lopt.roles import fan_in, infer_roles, role_leaves


class MuLOptState(NamedTuple):
  """The base optimizer's state and the per-tensor update factors ``s_W`` (float32 scalars)."""
  inner: Any
  multipliers: Any


def update_multipliers(params, roles, base_fan_in: float):
  """A pytree like ``params`` of ``s_W``: ``base_fan_in / fan_in(W)`` for hidden ``W``, else 1."""
  factors = [base_fan_in / fan_in(p.shape) if role == "hidden" else 1.0
             for p, role in zip(jax.tree.leaves(params), role_leaves(params, roles))]
  return jax.tree.structure(params).unflatten([jnp.asarray(f, jnp.float32) for f in factors])


@dataclasses.dataclass(frozen=True)
class MuScaled:
  """Turns a per-parameter learned optimizer (the next class in the MRO) into its μLO; see the
  module docstring. ``base_fan_in`` is the fan-in at which hidden updates keep their scale."""

  base_fan_in: float = 32.0
  reads_roles: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    if not self.base_fan_in > 0:
      raise ValueError(f"{type(self).__name__} needs base_fan_in > 0, got {self.base_fan_in}")

  def init(self, theta, params, num_steps, roles=None) -> MuLOptState:
    if roles is None:
      roles = infer_roles(params)
    return MuLOptState(inner=super().init(theta, params, num_steps),
                       multipliers=update_multipliers(params, roles, self.base_fan_in))

  def update(self, theta, opt_state: MuLOptState, grads, params, loss=None):
    updates, inner = super().update(theta, opt_state.inner, grads, params, loss)
    updates = jax.tree.map(lambda u, s: (u * s).astype(u.dtype), updates, opt_state.multipliers)
    return updates, MuLOptState(inner, opt_state.multipliers)


@dataclasses.dataclass(frozen=True)
class MuMLPLOpt(MuScaled, MLPLOpt):
  """``MLPLOpt`` with μLO update factors per parameter role."""

  name: ClassVar[str] = "mu_mlp"


@dataclasses.dataclass(frozen=True)
class MuAdafacMLPLOpt(MuScaled, AdafacMLPLOpt):
  """``AdafacMLPLOpt`` with μLO update factors per parameter role."""

  name: ClassVar[str] = "mu_adafac_mlp"
