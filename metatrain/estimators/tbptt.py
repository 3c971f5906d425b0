"""Truncated backpropagation through time.

Each task contributes ``d M_i / d theta``, the exact gradient of its unroll's meta-loss through the
``unroll_length`` inner updates, with the state entering the unroll held constant (its dependence on
earlier unrolls is cut). Exact for the truncated objective; memory grows with the unroll length unless
``remat`` recomputes each inner step's activations in the backward pass; the gradient can be chaotic
for long unrolls. Tasks whose unroll or gradient is not finite are dropped and restarted.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from metatrain.aggregate import estimate_metrics, masked_mean
from metatrain.inner_training import InnerTraining, all_finite
from metatrain.unroll import InnerState
from tasks import Data


@dataclasses.dataclass(frozen=True)
class TruncatedBackprop:
  """The truncated-backprop gradient estimator; see the module docstring."""

  inner: InnerTraining
  population: int
  remat: bool = False

  def init(self, theta, data: Data, key: jax.Array) -> InnerState:
    return self.inner.start(theta, data, key, self.population)

  def grad(self, theta, data: Data, state: InnerState, key: jax.Array
           ) -> tuple[Any, InnerState, dict]:
    state = self.inner.reset_finished(theta, data, state, key)

    def task_meta_loss(theta, state_i):
      loss, next_state, diverged = self.inner.meta_loss_of_unroll(theta, data, state_i,
                                                                  remat=self.remat)
      return loss, (next_state, diverged)

    value_and_grad = jax.value_and_grad(task_meta_loss, has_aux=True)
    (losses, (next_state, diverged)), per_task = jax.vmap(value_and_grad, in_axes=(None, 0))(
        theta, state)
    finite_grads = jax.vmap(all_finite)(per_task)
    valid = ~diverged & finite_grads
    next_state = self.inner.mark_finished(next_state, ~valid)
    metrics = estimate_metrics(losses, valid, per_task)
    metrics["mean_inner_step"] = jnp.mean(state.step.astype(jnp.float32))
    return masked_mean(per_task, valid), next_state, metrics
