"""Parameter roles read from what each tensor does in the model's computation.

``trace_roles(apply_fn, params, *example_args, **example_kwargs)`` traces
``apply_fn(params, *example_args, **example_kwargs)`` with ``jax.make_jaxpr`` (nothing runs) and
follows the data through the jaxpr. Every value carries three facts:

    weights    the matrices (parameters of two or more dimensions) it is a view of: a matrix
               reshaped, cast, sliced, scaled by vectors or constants, normalised, concatenated
               with other matrices, or contracted with another matrix (a low-rank product
               ``A @ B`` is a view of both), but not yet combined with the data
    data       whether it is computed from the model's inputs (the array leaves of the example
               arguments) without passing through a weight; arrays that ``apply_fn`` closes over
               are constants, like literals and vectors (parameters of at most one dimension)
    products   the matrices whose products reach it without passing through another matrix

A contraction (``dot_general``, ``conv_general_dilated``) of a matrix view with a partner that is
not one is a *use* of those matrices: it reads *features* when the partner holds products, else it
reads the *data* when the partner is data, else *constants* (as a recurrent matrix reads the zero
initial state in the first step of an unrolled loop), which says nothing unless it is the only
use. A ``gather`` or ``dynamic_slice`` of a matrix at indices computed from the data is a *lookup*
(an embedding table; the same with constant indices is a view, as ``table[:n]``). Any other
primitive that combines a matrix with the data or products (``x + pos``, ``concatenate([cls,
x])``, ``x * W``) is an *elementwise* use; its result is data and products only. The model's
output is everything ``apply_fn`` returns, so it must return the prediction alone (not a loss, not
flax's ``(y, mutated_state)``); a matrix *writes the output* when its products reach an output.

Roles, for each parameter:

    vector   at most one dimension; or a matrix whose every use is elementwise (it acts
             coordinate-wise, as a bias: flax's attention biases of shape (heads, head_dim), a
             learned position table added to the activations, a class token)
    input    a matrix looked up by the data (an embedding, also when the same table is the
             readout, as tied embeddings are: μP treats a shared table as its input layer), or
             whose every use reads the data, also when it writes the output (a one-layer linear
             model: μP gives a layer whose fan-in is fixed the input layer's scaling)
    output   a matrix whose every use reads features and which writes the output
    hidden   a matrix whose every use reads features and which does not write the output

Recurrences: ``scan`` and ``while`` loops start their carries from the values they are given and
join in what the body writes into them, until that no longer changes, before the uses in the body
count; so a recurrent matrix reading the hidden state ``h`` is hidden although ``h`` starts as
zeros (its first step reads nothing), and a matrix whose products feed the carry counts as reaching
the carry from the first step on. ``cond`` joins what its branches return (the branch index is
control, not data). Calls (``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``,
``custom_vjp_call``, ``checkpoint``/``remat``, any primitive with one sub-jaxpr of its own arity)
are followed inside.

A matrix that the trace cannot decide, because it is not used, reads only constants (the inputs
were closed over, not passed), is used in more than one way (reads the data in one place and
features in another, or both a contraction and an elementwise use), or enters a higher-order
primitive this module does not know, takes its role from ``lopt.infer_roles``' name rules instead,
and one warning names those parameters, what they do, and the roles they took.
"""

import warnings
from collections import defaultdict
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.extend import core

from lopt.roles import name_roles

CONTRACTIONS = frozenset({"dot_general", "conv_general_dilated"})
LOOKUPS = frozenset({"gather", "dynamic_slice"})

_USE_WORDS = {"data": "reads the data", "features": "reads other layers' outputs",
              "lookup": "is looked up by index", "elementwise": "acts elementwise",
              "opaque": "enters a primitive the tracer does not follow",
              "constants": "reads only constants: pass the model's inputs as example arguments"}


class _Flow(NamedTuple):
  """What a value of the traced computation comes from; see the module docstring."""
  weights: frozenset = frozenset()
  data: bool = False
  products: frozenset = frozenset()

  def join(self, other: "_Flow") -> "_Flow":
    return _Flow(self.weights | other.weights, self.data or other.data,
                self.products | other.products)

  @property
  def active(self) -> bool:
    """Whether the value carries the data or products: an activation, not a weight or constant."""
    return self.data or bool(self.products)


def _join_all(flows) -> _Flow:
  joined = _Flow()
  for flow in flows:
    joined = joined.join(flow)
  return joined


class _Tracer:
  """Runs the flow rules over a jaxpr; ``uses`` collects each matrix's uses (by leaf index)."""

  def __init__(self):
    self.uses: dict[int, set[str]] = defaultdict(set)

  def run(self, jaxpr: core.Jaxpr | core.ClosedJaxpr, inputs: list[_Flow], record: bool
          ) -> list[_Flow]:
    """The flows of ``jaxpr``'s outputs given its inputs'; uses are recorded only when
    ``record`` (not while a loop's carries are still growing)."""
    if isinstance(jaxpr, core.ClosedJaxpr):
      jaxpr = jaxpr.jaxpr
    env = dict(zip(jaxpr.invars, inputs))
    # literals and constants (constvars, not in env) are neither weights, nor data, nor products
    read = lambda var: _Flow() if isinstance(var, core.Literal) else env.get(var, _Flow())
    for eqn in jaxpr.eqns:
      outs = self._equation(eqn, [read(var) for var in eqn.invars], record)
      env.update(zip(eqn.outvars, outs))
    return [read(var) for var in jaxpr.outvars]

  def _equation(self, eqn: core.JaxprEqn, ins: list[_Flow], record: bool) -> list[_Flow]:
    name = eqn.primitive.name
    if name == "scan":
      return self._scan(eqn, ins, record)
    if name == "while":
      return self._while(eqn, ins, record)
    if name == "cond":
      branches = [self.run(branch, ins[1:], record) for branch in eqn.params["branches"]]
      return [_join_all(outs) for outs in zip(*branches)]
    subs = [p for p in eqn.params.values() if isinstance(p, (core.Jaxpr, core.ClosedJaxpr))]
    if len(subs) == 1 and len(subs[0].in_avals) == len(ins):
      return self.run(subs[0], ins, record)
    if list(core.jaxprs_in_params(eqn.params)):
      out = self._combine(ins, record, "opaque")
    elif name in CONTRACTIONS:
      out = self._contract(ins[0], ins[1], record)
    elif name in LOOKUPS and ins[0].weights and any(i.active for i in ins[1:]):
      out = self._use(ins[0], "lookup", record)
    else:
      out = self._combine(ins, record, "elementwise")
    return [out] * len(eqn.outvars)

  def _use(self, weight: _Flow, use: str, record: bool) -> _Flow:
    """Records ``use`` of ``weight``'s matrices; the result is their product."""
    if record:
      for i in weight.weights:
        self.uses[i].add(use)
    return _Flow(products=weight.weights)

  def _contract(self, a: _Flow, b: _Flow, record: bool) -> _Flow:
    if a.weights and b.weights:
      return _Flow(weights=a.weights | b.weights)
    if not (a.weights or b.weights):
      return self._combine([a, b], record, "elementwise")
    weight, partner = (a, b) if a.weights else (b, a)
    use = "features" if partner.products else "data" if partner.data else "constants"
    return self._use(weight, use, record)

  def _combine(self, ins: list[_Flow], record: bool, use: str) -> _Flow:
    """Any other primitive: a view of its matrices if nothing else is active, else an activation
    and a ``use`` of the matrices it mixes in."""
    joined = _join_all(ins)
    if not joined.active:
      return joined
    if record:
      for i in joined.weights:
        self.uses[i].add(use)
    return joined._replace(weights=frozenset())

  def _fixed_point(self, body, before: list[_Flow], carry: list[_Flow], after: list[_Flow]
                   ) -> list[_Flow]:
    """The carries of a loop whose ``body`` maps ``before + carry + after`` to the new carry
    first: the given carries joined with all the body writes into them."""
    while True:
      out = self.run(body, before + carry + after, record=False)
      grown = [c.join(o) for c, o in zip(carry, out)]
      if grown == carry:
        return carry
      carry = grown

  def _scan(self, eqn, ins, record):
    body, n_consts, n_carry = (eqn.params[k] for k in ("jaxpr", "num_consts", "num_carry"))
    consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
    carry = self._fixed_point(body, consts, carry, xs)
    return carry + self.run(body, consts + carry + xs, record)[n_carry:]

  def _while(self, eqn, ins, record):
    n_cond, n_body = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
    cond_consts, body_consts = ins[:n_cond], ins[n_cond:n_cond + n_body]
    carry = ins[n_cond + n_body:]
    carry = self._fixed_point(eqn.params["body_jaxpr"], body_consts, carry, [])
    self.run(eqn.params["body_jaxpr"], body_consts + carry, record)
    self.run(eqn.params["cond_jaxpr"], cond_consts + carry, record)
    return carry


def _role(uses: set[str], writes_output: bool) -> str | None:
  """A matrix's role from its uses, ``None`` when they do not decide it (module docstring)."""
  uses = uses - {"constants"}
  if "lookup" in uses and "opaque" not in uses:
    return "input"
  if uses == {"data"}:
    return "input"
  if uses == {"features"}:
    return "output" if writes_output else "hidden"
  if uses == {"elementwise"}:
    return "vector"
  return None


def _is_array(x) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct, np.generic))


def trace_roles(apply_fn: Callable, params: Any, *example_args, **example_kwargs) -> Any:
  """A pytree like ``params`` of role strings (``lopt.ROLES``) read from the computation of
  ``apply_fn(params, *example_args, **example_kwargs)``, as the module docstring says.

  ``apply_fn`` is the model's forward pass and returns its prediction: flax linen's
  ``model.apply`` with ``params = variables``, haiku's ``transformed.apply`` (pass ``None`` for
  its rng), or for flax nnx, with ``graphdef, params, rest = nnx.split(model, nnx.Param, ...)``,
  ``lambda params, rest, x: nnx.merge(graphdef, params, rest)(x)`` and ``rest`` passed among the
  example arguments (a module that updates its RNG state cannot close over it). The example
  arguments may be arrays or ``jax.ShapeDtypeStruct``, as may ``params``; arguments that are not
  arrays (``train=False``, Python numbers) are passed as they are. A matrix the trace cannot
  decide takes ``lopt.infer_roles``' guess, with a warning that names it.
  """
  param_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  arg_leaves, arg_tree = jax.tree.flatten((example_args, example_kwargs))
  traced = [i for i, leaf in enumerate(arg_leaves) if _is_array(leaf)]

  def forward(params, arrays):
    leaves = list(arg_leaves)
    for i, array in zip(traced, arrays):
      leaves[i] = array
    args, kwargs = jax.tree.unflatten(arg_tree, leaves)
    return apply_fn(params, *args, **kwargs)

  closed = jax.make_jaxpr(forward)(params, [arg_leaves[i] for i in traced])
  inputs = [_Flow(weights=frozenset({i})) if len(leaf.shape) >= 2 else _Flow()
            for i, (_, leaf) in enumerate(param_leaves)]
  inputs += [_Flow(data=True)] * len(traced)
  tracer = _Tracer()
  written = _join_all(tracer.run(closed, inputs, record=True)).products
  roles = ["vector" if len(leaf.shape) <= 1 else _role(tracer.uses[i], i in written)
           for i, (_, leaf) in enumerate(param_leaves)]
  undecided = [i for i, role in enumerate(roles) if role is None]
  if undecided:
    guesses = name_roles(params)[0]
    described = []
    for i in undecided:
      roles[i] = guesses[i]
      uses = sorted(tracer.uses[i] - {"constants"} or tracer.uses[i])
      uses = " and ".join(_USE_WORDS[use] for use in uses) or "is not used"
      described.append(f"{jax.tree_util.keystr(param_leaves[i][0])} ({uses}): {roles[i]}")
    warnings.warn(f"lopt.trace_roles could not read these roles from the computation and took "
                  f"lopt.infer_roles' guesses from the names: {'; '.join(described)}. Check them, "
                  f"or pass roles= (a pytree like the parameters of 'input' | 'hidden' | 'output' "
                  f"| 'vector', e.g. this result with those entries set) to set them",
                  stacklevel=2)
  return jax.tree.structure(params).unflatten(roles)
