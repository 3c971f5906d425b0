"""One estimator over a population drawn from a mixture of task families.

Families of a mixture differ in shapes, so the population is cut into slices (``tasks.Mixture``), and
member ``j`` runs its own estimator of the same kind over its ``P_j`` tasks and its family's data
(``data`` is ``tasks.Mixture.data()``, one entry per member): one ``vmap`` per slice, all inside the
same ``jit``. If member ``j`` returns ``g_j``, the mean over its ``n_j`` tasks that did
not diverge, the mixture's meta-gradient is the mean over all valid tasks of the population,

    g = sum_j n_j g_j / sum_j n_j,

and, the slices being independent, the variance of that mean is ``sum_j n_j^2 Var(g_j) / (sum_j n_j)^2``.
Metrics are pooled the same way; each member's meta-loss is logged as ``meta_loss/<member>``.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MixtureEstimator:
  """``members[j]`` (an estimator over family ``j``'s slice) is logged as ``names[j]``."""

  members: tuple[Any, ...]
  names: tuple[str, ...]

  @property
  def population(self) -> int:
    return sum(member.population for member in self.members)

  def init(self, theta, data: tuple[Any, ...], key: jax.Array) -> tuple[Any, ...]:
    keys = jax.random.split(key, len(self.members))
    return tuple(member.init(theta, d, k) for member, d, k in zip(self.members, data, keys))

  def grad(self, theta, data: tuple[Any, ...], state: tuple[Any, ...], key: jax.Array
           ) -> tuple[Any, tuple, dict]:
    keys = jax.random.split(key, len(self.members))
    grads, states, member_metrics = zip(*(
        member.grad(theta, d, s, k)
        for member, d, s, k in zip(self.members, data, state, keys)))
    counts = [member.population * (1.0 - m["diverged_fraction"])
              for member, m in zip(self.members, member_metrics)]
    total = jnp.maximum(sum(counts), 1.0)
    grad = jax.tree.map(lambda *gs: sum(c * g for c, g in zip(counts, gs)) / total, *grads)
    metrics = {
        "meta_loss": sum(c * m["meta_loss"] for c, m in zip(counts, member_metrics)) / total,
        "diverged_fraction": sum(member.population * m["diverged_fraction"] for member, m
                                 in zip(self.members, member_metrics)) / self.population,
        "grad_variance": sum(c**2 * m["grad_variance"]
                             for c, m in zip(counts, member_metrics)) / total**2,
    }
    if all("mean_inner_step" in m for m in member_metrics):
      metrics["mean_inner_step"] = sum(member.population * m["mean_inner_step"] for member, m
                                       in zip(self.members, member_metrics)) / self.population
    for name, m in zip(self.names, member_metrics):
      metrics[f"meta_loss/{name}"] = m["meta_loss"]
    return grad, states, metrics
