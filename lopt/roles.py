"""Parameter roles for μP-aware learned optimizers: given by the user or inferred from the params.

A role says how a parameter tensor scales with the width of the network (Tensor Programs V):

    input    a matrix that reads the data: its fan-in is fixed, its fan-out grows with width
    hidden   a matrix whose fan-in and fan-out both grow with width
    output   the readout: its fan-in grows with width, its fan-out is fixed
    vector   biases, norm scales and offsets, scalars (at most one dimension), and tensors that
             act coordinate-wise

Roles travel as a pytree of these strings with the structure of the parameters (``tasks`` models
give it through ``Task.roles``; ``lopt`` never imports ``tasks``). The fan-in of a tensor is the
number of inputs of one output unit, ``prod(shape[:-1])``: outputs on the last axis, as haiku and
flax store dense and convolution kernels.

``infer_roles(params)`` reads roles from the parameters alone, from the names on each tensor's path
and the order of the paths:

1. a tensor of at most one dimension, or one named ``bias``, ``scale`` or ``offset`` (flax's
   attention biases are ``(heads, head_dim)``), is ``vector``;
2. the matrices of a module of ``KNOWN_MODULES``, recognised by the exact set of their paths
   below it: recurrent cells (flax linen ``LSTMCell`` and ``OptimizedLSTMCell``, whose
   ``ii if ig io`` read the data and ``hi hf hg ho`` the state; linen ``GRUCell`` ``ir iz in`` /
   ``hr hz hn``, ``MGUCell``, ``SimpleCell``, ``ConvLSTMCell``; nnx ``LSTMCell`` (``if_``) and
   the nnx cells with ``dense_i`` / ``dense_h``; haiku ``gru`` ``w_i`` / ``w_h`` and
   ``vanilla_rnn``) have their state-reading matrices ``hidden`` and their data-reading ones
   placed in step 4; haiku's ``lstm/linear`` reads the data and the state concatenated (a fan-in
   that grows with width) and is ``hidden``; attention projections (flax ``query key value out``,
   haiku ``multi_head_attention``'s ``query key value linear``) are ``hidden``;
3. another matrix whose module or parameter name (the last two names of its path, split into
   words at ``_``, ``/``, digits and camelCase) has one of the words of ``OUTPUT_WORDS``,
   ``INPUT_WORDS`` or ``HIDDEN_WORDS`` takes that role, in that order of priority;
4. the input-to-gate matrices of the first recurrent cell (natural path order) are ``input``
   unless a matrix was named input (an embedding), those of other cells ``hidden``;
5. of the other matrices, ordered by their paths in natural order (``Dense_2`` before
   ``Dense_10``), the last is ``output`` unless a matrix was named output; the first is ``input``
   unless a matrix was named input or the model has a recurrent cell; the rest are ``hidden``.

Step 5 and, with several cells and no embedding, step 4 guess from path order, which is the
order of the layers only for a sequential stack. ``infer_roles`` stays silent where the model says
it is one: the matrices of step 5 are numbered siblings (haiku ``mlp/~/linear_0``… or ``linear``,
``linear_1``…; flax ``Dense_0``…; nnx list items ``0``, ``1``…), or numbered convolutions followed
by numbered dense layers (a CNN), or a single readout after recurrent cells (``tasks``' models name
every matrix, step 3). Otherwise it warns once, naming the parameters it placed by order, and
points to ``trace_roles``. It is still wrong, silently, when a hidden module's name contains a hint
word (an attention projection called ``output``, a module ``head_0`` meaning an attention head),
when numbered layers were created out of data-flow order (``nn.Dense(3)(nn.Dense(5)(x))`` names
the readout ``Dense_0``), for a matrix-shaped non-weight (a learned position table without
``embed`` in its name is taken for hidden), and for an unnamed projection before a recurrent cell
when it is the only other matrix (taken for the readout).

``lopt.trace_roles(apply_fn, params, *example_inputs)`` (``lopt.role_tracing``) reads the roles
from what each tensor does in the model's jaxpr instead, and falls back on these name rules, with
a warning, only for matrices whose use does not decide. Pass ``roles`` explicitly when in doubt.
"""

import math
import re
import warnings
from typing import Any

import jax

ROLES = ("input", "hidden", "output", "vector")

OUTPUT_WORDS = frozenset({"output", "outputs", "head", "readout", "logits", "unembed",
                          "classifier"})
INPUT_WORDS = frozenset({"input", "inputs", "embed", "embedding", "embeddings", "stem"})
HIDDEN_WORDS = frozenset({"hidden"})
VECTOR_NAMES = frozenset({"bias", "scale", "offset"})

CELL_INPUT = "cell input"  # an input-to-gate matrix of a recurrent cell: input or hidden, see above


def _cell(inputs: str, hiddens: str, param: str = "kernel") -> dict[str, str]:
  """The matrices of a recurrent cell, by path below the cell: its input-to-gate modules (names
  in ``inputs``) and its hidden-to-gate modules (``hiddens``), each holding a matrix ``param``."""
  return ({f"{name}/{param}": CELL_INPUT for name in inputs.split()}
          | {f"{name}/{param}": "hidden" for name in hiddens.split()})


# Modules recognised by the exact set of their matrices' paths below them: (the name, less a ``_N``
# suffix, the module itself must have where those paths alone are too common; whether it is a
# recurrent cell, which reads the data in a model without an embedding; the roles by path).
KNOWN_MODULES = (
    (None, True, _cell("ii if ig io", "hi hf hg ho")),  # flax linen LSTMCell, OptimizedLSTMCell
    (None, True, _cell("ii if_ ig io", "hi hf hg ho")),  # flax nnx LSTMCell
    (None, True, _cell("dense_i", "dense_h")),  # flax nnx OptimizedLSTMCell, GRUCell, SimpleCell
    (None, True, _cell("ir iz in", "hr hz hn")),  # flax GRUCell
    (None, True, _cell("if in", "hf hn")),  # flax MGUCell
    (None, True, _cell("i", "h")),  # flax SimpleCell
    (None, True, _cell("ih", "hh")),  # flax ConvLSTMCell
    ("gru", True, {"w_i": CELL_INPUT, "w_h": "hidden"}),  # haiku GRU
    ("vanilla_rnn", True, {"linear/w": CELL_INPUT, "linear_1/w": "hidden"}),  # haiku VanillaRNN
    ("lstm", True, {"linear/w": "hidden"}),  # haiku LSTM: one matrix reads [x, h]
    (None, False, {f"{name}/kernel": "hidden" for name in ("query", "key", "value", "out")}),
    ("multi_head_attention", False, {f"{name}/w": "hidden" for name in ("query", "key", "value",
                                                                         "linear")}),
)


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


def _stem(name: str) -> str:
  """A module name less its number: ``Dense`` for ``Dense_3``, ``linear`` for ``linear_1``."""
  return re.sub(r"_?\d+$", "", name)


def _hinted_role(names: list[str]) -> str | None:
  words = _words(names[-2:])
  for role, hints in (("output", OUTPUT_WORDS), ("input", INPUT_WORDS), ("hidden", HIDDEN_WORDS)):
    if words & hints:
      return role
  return None


def _known_modules(matrices: dict[int, list[str]]) -> tuple[dict[int, str], list[tuple]]:
  """The roles (``{leaf index: role}``, ``CELL_INPUT`` included) of the matrices (``{leaf index:
  path names}``) that belong to modules of ``KNOWN_MODULES``, and the paths of the recurrent
  cells among those modules."""
  modules: dict[tuple, dict[str, int]] = {}
  for i, names in matrices.items():
    for depth in range(len(names)):
      modules.setdefault(tuple(names[:depth]), {})["/".join(names[depth:])] = i
  roles, cells = {}, []
  for module, members in modules.items():
    for stem, is_cell, table in KNOWN_MODULES:
      if members.keys() == table.keys() and (stem is None or module and _stem(module[-1]) == stem):
        roles.update({i: table[below] for below, i in members.items()})
        cells += [module] if is_cell else []
  return roles, cells


def _sequential(paths: list[list[str]], ndims: list[int]) -> bool:
  """Whether matrices with these paths (in natural order) and numbers of dimensions are the layers
  of a sequential stack: numbered siblings (one parent, one module name up to its number:
  ``Dense_0``, ``Dense_1``; haiku ``linear``, ``linear_1``; nnx list items ``0``, ``1``), or the
  convolutions (more than two dimensions) of a CNN, so numbered, followed by its dense layers."""
  families = []
  for path, ndim in zip(paths, ndims):
    family = (tuple(path[:-2]), _stem(path[-2]) if len(path) > 1 else "", path[-1], ndim > 2)
    if not families or families[-1] != family:
      families.append(family)
  return len(families) == 1 or (len(families) == 2 and families[0][3] and not families[1][3])


def name_roles(params: Any) -> tuple[list[str], list[int]]:
  """The roles of ``params``' leaves (in ``jax.tree.leaves`` order) read from names and path
  order as the module docstring says, and the indices of the leaves whose role is a guess from
  path order alone."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [_path_names(path) for path, _ in leaves]
  roles: list[str | None] = [None] * len(leaves)
  matrices = {}
  for i, (_, leaf) in enumerate(leaves):
    if len(leaf.shape) <= 1 or (names[i] and names[i][-1] in VECTOR_NAMES):
      roles[i] = "vector"
    else:
      matrices[i] = names[i]
  known, cells = _known_modules(matrices)
  cells.sort(key=lambda module: _natural_key(list(module)))
  unnamed = []
  for i in matrices:
    roles[i] = known.get(i) or _hinted_role(names[i])
    if roles[i] is None:
      unnamed.append(i)
  unnamed.sort(key=lambda i: _natural_key(names[i]))
  named_input, named_output = "input" in roles, "output" in roles
  for i in unnamed:
    roles[i] = "hidden"
  cell_inputs = [i for i in matrices if roles[i] == CELL_INPUT]
  for i in cell_inputs:
    first = tuple(names[i][:len(cells[0])]) == cells[0]
    roles[i] = "input" if first and not named_input else "hidden"
  if unnamed and not named_output:
    roles[unnamed[-1]] = "output"
  if unnamed and not named_input and not cells:
    roles[unnamed[0]] = "input"
  guessed = []
  if len(cells) > 1 and not named_input:
    guessed += cell_inputs
  if len(unnamed) > 1 and (cells or not _sequential([names[i] for i in unnamed],
                                                    [len(leaves[i][1].shape) for i in unnamed])):
    guessed += unnamed
  return roles, sorted(guessed)


def infer_roles(params: Any) -> Any:
  """A pytree like ``params`` of role strings from ``ROLES``, read from names and path order as
  the module docstring says; it warns, naming them, when it guesses roles from path order alone.

  ``params`` may hold arrays or anything with a ``shape`` (``jax.ShapeDtypeStruct``).
  ``lopt.trace_roles`` reads the roles from the model's computation instead.
  """
  roles, guessed = name_roles(params)
  if guessed:
    paths = [jax.tree_util.keystr(path) for path, _ in
             jax.tree_util.tree_flatten_with_path(params)[0]]
    listed = ", ".join(f"{paths[i]}: {roles[i]}" for i in guessed)
    warnings.warn(f"lopt.infer_roles guessed these roles from the order of the parameter paths "
                  f"alone, which need not be the order of the layers: {listed}. Check them, read "
                  f"them from the model with lopt.trace_roles(apply_fn, params, *example_inputs), "
                  f"or pass roles= (a pytree like the parameters of 'input' | 'hidden' | 'output' "
                  f"| 'vector')", stacklevel=2)
  return jax.tree.structure(params).unflatten(roles)


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
