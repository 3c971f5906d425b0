"""Parameter roles for μP-aware learned optimizers: given by the user or inferred from the params.

A role says how a parameter tensor scales with the width of the network (Tensor Programs V):

    input    a matrix that reads the data: its fan-in is fixed, its fan-out grows with width
    hidden   a matrix whose fan-in and fan-out both grow with width
    output   the readout: its fan-in grows with width, its fan-out is fixed
    vector   biases, norm scales and offsets, scalars (at most one dimension)

Roles travel as a pytree of these strings with the structure of the parameters (``tasks`` models
give it through ``Task.roles``; ``lopt`` never imports ``tasks``). The fan-in of a tensor is the
number of inputs of one output unit, ``prod(shape[:-1])``: outputs on the last axis, as haiku and
flax store dense and convolution kernels.

``infer_roles(params)`` guesses roles for models that carry none, from the names on each tensor's
path and the order of the paths:

1. a tensor of at most one dimension is ``vector``;
2. a matrix (two or more dimensions) whose module or parameter name (the last two names of its
   path, split into words at ``_``, ``/``, digits and camelCase) has one of the words of
   ``OUTPUT_WORDS``, ``INPUT_WORDS`` or ``HIDDEN_WORDS`` takes that role, in that order of priority;
3. of the other matrices, ordered by their paths in natural order (``Dense_2`` before ``Dense_10``),
   the first is ``input`` unless a matrix was named input in step 2, the last is ``output`` unless
   a matrix was named output, and the rest are ``hidden``.

This reads the models of ``tasks`` (``input_0``, ``hidden_1``, ``output``), haiku's default names
(``mlp/~/linear_0``…, ``embed``), flax linen's (``Dense_0``…, ``Embed_0/embedding``, attention
``query``/``key``/``value``/``out`` are hidden) and flax nnx attribute names. It is wrong when an
unnamed model's paths do not sort in data-flow order (nnx attributes ``fc`` then ``conv``), when a
hidden module's name contains a hint word (an attention projection called ``output``, a module
``head_0`` meaning an attention head), when a model has several inputs or readouts without hint
names, or for a matrix-shaped non-weight (a learned position table without ``embed`` in its name is
taken for hidden). Pass ``roles`` explicitly when in doubt.
"""

import math
import re
from typing import Any

import jax

ROLES = ("input", "hidden", "output", "vector")

OUTPUT_WORDS = frozenset({"output", "outputs", "head", "readout", "logits", "unembed",
                          "classifier"})
INPUT_WORDS = frozenset({"input", "inputs", "embed", "embedding", "embeddings", "stem"})
HIDDEN_WORDS = frozenset({"hidden"})


def fan_in(shape) -> int:
  """Inputs per output unit of a weight whose last axis is its outputs (dense or convolution)."""
  return math.prod(shape[:-1])


def _path_names(path) -> list[str]:
  """The names along a pytree path, haiku's ``a/~/b`` module names split at ``/``; the ``value``
  attribute of a flax nnx ``Variable`` is skipped so that a state and its pure arrays agree."""
  names = []
  for key in path:
    if isinstance(key, jax.tree_util.GetAttrKey):
      if key.name == "value":
        continue
      name = key.name
    elif isinstance(key, jax.tree_util.DictKey):
      name = key.key
    elif isinstance(key, jax.tree_util.SequenceKey):
      name = key.idx
    else:
      name = getattr(key, "key", key)
    names.extend(part for part in str(name).split("/") if part not in ("", "~"))
  return names


def _words(names: list[str]) -> set[str]:
  """The lower-case words of ``names``: split at camelCase boundaries and at every non-letter."""
  text = " ".join(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name) for name in names)
  return set(re.findall(r"[a-z]+", text.lower()))


def _natural_key(names: list[str]) -> list[list]:
  """Sort key that orders numbers inside names by value: ``Dense_2`` before ``Dense_10``."""
  return [[int(c) if c.isdigit() else c for c in re.split(r"(\d+)", name)] for name in names]


def _hinted_role(names: list[str]) -> str | None:
  words = _words(names[-2:])
  for role, hints in (("output", OUTPUT_WORDS), ("input", INPUT_WORDS), ("hidden", HIDDEN_WORDS)):
    if words & hints:
      return role
  return None


def infer_roles(params: Any) -> Any:
  """A pytree like ``params`` of role strings from ``ROLES``, guessed as the module docstring says.

  ``params`` may hold arrays or anything with a ``shape`` (``jax.ShapeDtypeStruct``).
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  roles: list[str | None] = [None] * len(leaves)
  unnamed = []
  for i, (path, leaf) in enumerate(leaves):
    names = _path_names(path)
    if len(leaf.shape) <= 1:
      roles[i] = "vector"
    else:
      roles[i] = _hinted_role(names)
      if roles[i] is None:
        unnamed.append((_natural_key(names), i))
  unnamed = [i for _, i in sorted(unnamed)]
  for i in unnamed:
    roles[i] = "hidden"
  if unnamed and "output" not in roles:
    roles[unnamed[-1]] = "output"
  if unnamed and "input" not in roles:
    roles[unnamed[0]] = "input"
  return treedef.unflatten(roles)


def role_leaves(params: Any, roles: Any) -> list[str]:
  """The roles of ``params``' leaves, in ``jax.tree.leaves(params)`` order, after checking that
  ``roles`` has the structure of ``params`` and holds only valid role strings."""
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  try:
    flat_roles = treedef.flatten_up_to(roles)
  except (ValueError, TypeError) as e:
    raise ValueError(f"roles must be a pytree with the structure of the parameters and one role "
                     f"string per parameter tensor: {e}") from None
  for (path, _), role in zip(paths_and_leaves, flat_roles):
    if not isinstance(role, str) or role not in ROLES:
      raise ValueError(f"unknown role {role!r} for the parameter at {jax.tree_util.keystr(path)}; "
                       f"valid roles: {list(ROLES)}")
  return flat_roles
