"""Per-leaf maps over a parameter pytree and optimizer state that is deeper than it."""

from collections.abc import Callable
from typing import Any

import jax


def map_leaves(fn: Callable[..., tuple], params: Any, *trees: Any) -> tuple[Any, ...]:
  """Applies ``fn(p, *parts)`` to every leaf ``p`` of ``params``, ``parts`` being the subtrees of
  ``trees`` at ``p``'s position (a leaf of ``trees`` may itself be a pytree, e.g. a dict of
  accumulators). ``fn`` returns a tuple; the result has one pytree shaped like ``params`` per element.
  """
  treedef = jax.tree.structure(params)
  per_leaf = [fn(*leaves) for leaves in zip(
      treedef.flatten_up_to(params), *(treedef.flatten_up_to(tree) for tree in trees))]
  return tuple(treedef.unflatten(column) for column in zip(*per_leaf))
