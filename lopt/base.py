"""The interface every learned optimizer implements.

A learned optimizer (LO) is a pair of pure functions of arrays, parametrised by meta-parameters
``theta``, in the spirit of an optax ``GradientTransformation``:

    opt_state            = lopt.init(theta, params, num_steps, roles)
    (updates, opt_state) = lopt.update(theta, opt_state, grads, params, loss)

``roles`` is ``None`` or a pytree like ``params`` of role strings (``"input" | "hidden" | "output" |
"vector"``, ``lopt.roles``) for architectures that scale their updates by role (μLO); the others
ignore it. Whatever they read from it is kept in ``opt_state`` as arrays.

Three optional class flags tell the optax export (``lopt.as_optax``) what an architecture needs:
``reads_roles`` (it scales updates by role; given no roles it infers them, with a warning),
``reads_loss`` (it reads the training loss; an update without it warns) and
``takes_learning_rate`` (its learning rate and weight decay come from outside, as AdamW's do).
Absent means ``False``.

``updates`` are *added* to the parameters (``optax.apply_updates``), as in optax. The LO object holds
static configuration only (sizes, decays, constants): every array lives in ``theta`` or ``opt_state``,
so the whole inner training can be ``jit``-ed, ``vmap``-ed over a population and sharded.
"""

from typing import Any, Protocol, runtime_checkable

import jax

Params = Any
MetaParams = Any
OptState = Any


@runtime_checkable
class LearnedOptimizer(Protocol):
  """A parametrised update rule; see the module docstring for the contract."""

  name: str

  def init_meta_params(self, key: jax.Array) -> MetaParams:
    """Returns meta-parameters ``theta`` for this architecture."""

  def init(self, theta: MetaParams, params: Params, num_steps: int,
           roles: Params | None = None) -> OptState:
    """Returns the optimizer state for ``params`` (with ``roles``, or none) for a training of
    ``num_steps`` steps."""

  def update(self, theta: MetaParams, opt_state: OptState, grads: Params, params: Params,
             loss: jax.Array | float | None = None) -> tuple[Params, OptState]:
    """Returns the additive ``updates`` for ``params`` and the next state."""
