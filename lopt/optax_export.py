"""Exports a learned optimizer with fixed meta-parameters as a plain optax transformation."""

import dataclasses
import warnings

import jax
import optax

from lopt.base import LearnedOptimizer, MetaParams, Params
from lopt.roles import name_roles

INFER_ROLES = "infer"


def as_optax(lopt: LearnedOptimizer, theta: MetaParams, num_steps: int,
             roles: Params | str | None = None, learning_rate: float | optax.Schedule | None = None,
             weight_decay: float | None = None) -> optax.GradientTransformationExtraArgs:
  """Returns ``lopt`` with meta-parameters ``theta`` as an optax transformation.

  ``num_steps`` is the length of the training the optimizer plans for (its progress features read
  ``step / num_steps``); steps past it are treated as the last step. It may be a (traced) integer
  array, e.g. a horizon drawn per task in meta-training. The transformation needs
  ``params`` in ``update`` and takes the current loss through ``value=`` (as
  ``optax.GradientTransformationExtraArgs`` does) for architectures that read it. Its state is a
  pytree of arrays, so it checkpoints and shards like the parameters, and it composes with
  ``optax.chain`` (clipping, weight decay, a schedule through ``optax.scale_by_schedule``).

  Under ``jit`` with sharded parameters (and state) the update equals the single-device one: the
  per-tensor statistics (RMS normalisation, factored moments) are taken over whole tensors. Inside
  ``shard_map`` the update sees only the local blocks, so give it replicated (data-parallel)
  parameters there; with parameters sharded inside ``shard_map`` it would normalise each shard by
  its own statistics. Both forms and ``pmap`` are tested against one device.

  ``roles`` is a pytree like the parameters of role strings (``lopt.roles``) for μP-aware
  architectures (μLO, ``reads_roles``); others ignore it. Given ``None``, a μLO infers them with
  ``lopt.infer_roles`` and warns once, listing what it inferred; ``roles="infer"`` asks for the
  inference without the warning. An architecture that reads the loss (``reads_loss``) warns when
  ``update`` gets no ``value=``: its loss features then keep their initial values.

  ``learning_rate`` (a float, the peak of a warmup + cosine schedule over ``num_steps``, or an
  optax schedule) and ``weight_decay`` (decoupled, as AdamW's) are for architectures that take
  them from outside (``takes_learning_rate``, e.g. ``"ortho_mlp"``); ``None`` keeps the ones it
  was meta-trained with. A schedule must last the ``num_steps`` planned.
  """
  if isinstance(num_steps, int) and num_steps < 1:
    raise ValueError(f"num_steps must be a positive number of training steps, got {num_steps}")
  lopt = with_learning_rate(lopt, learning_rate, weight_decay, num_steps)

  if isinstance(roles, str) and roles != INFER_ROLES:
    raise ValueError(f"roles must be a pytree like the parameters, None or '{INFER_ROLES}', got "
                     f"'{roles}'")

  def init_fn(params):
    return lopt.init(theta, params, num_steps, _roles_for(lopt, params, roles))

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(f"the learned optimizer '{lopt.name}' reads the parameters: call "
                       "update(grads, state, params) with params")
    if value is None and getattr(lopt, "reads_loss", False):
      warnings.warn(f"the learned optimizer '{lopt.name}' reads the training loss, but update() "
                    "got no value=: its loss features stay at their initial values; call "
                    "tx.update(grads, state, params, value=loss)", stacklevel=2)
    return lopt.update(theta, state, updates, params, value)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _roles_for(lopt: LearnedOptimizer, params: Params, roles: Params | str | None):
  """The roles ``lopt.init`` gets: as given, inferred (with a warning that lists them when a
  role-reading architecture was given none), or ``None`` where the architecture ignores them."""
  if not getattr(lopt, "reads_roles", False):
    return None if isinstance(roles, str) else roles
  if roles is not None and not isinstance(roles, str):
    return roles
  inferred = name_roles(params)[0]  # lopt.infer_roles's rules, per leaf, without its warning.
  if roles is None:
    warnings.warn(f"the learned optimizer '{lopt.name}' scales each tensor's update by its role "
                  f"and was given no roles=; it inferred {_describe(params, inferred)}. Check them "
                  "and pass roles= (a pytree like the parameters of 'input' | 'hidden' | 'output' "
                  "| 'vector'; lopt.trace_roles(apply_fn, params, *example_inputs) reads them from "
                  f"the model), or roles='{INFER_ROLES}' to use the inference without this warning",
                  stacklevel=3)
  return jax.tree.structure(params).unflatten(inferred)


def _describe(params: Params, roles: list[str]) -> str:
  """The ``roles`` of ``params``' leaves in a sentence: the matrices by role, the vectors counted."""
  by_role = {}
  for (path, _), role in zip(jax.tree_util.tree_flatten_with_path(params)[0], roles):
    by_role.setdefault(role, []).append(jax.tree_util.keystr(path))
  matrices = [f"{role}: {', '.join(by_role[role])}" for role in ("input", "hidden", "output")
              if role in by_role]
  return "; ".join(matrices + [f"{len(by_role.get('vector', []))} vector tensors"])


def with_learning_rate(lopt: LearnedOptimizer, learning_rate, weight_decay, num_steps
                       ) -> LearnedOptimizer:
  """``lopt`` with ``learning_rate`` and ``weight_decay`` set where they are not ``None``;
  ``ValueError`` for an architecture that learns its own step size, a bad value, or a schedule
  that is 0 on the last two of ``num_steps`` steps (it ended before the training does)."""
  if learning_rate is None and weight_decay is None:
    return lopt
  if not getattr(lopt, "takes_learning_rate", False):
    raise ValueError(f"the learned optimizer '{lopt.name}' learns its own step size and takes no "
                     "learning_rate= or weight_decay=; compose it with optax (e.g. "
                     "optax.chain(tx, optax.scale(0.5))) or use an architecture that takes them, "
                     "such as 'ortho_mlp'")
  # The architecture's own checks (its __post_init__) run on the replaced values.
  lopt = dataclasses.replace(
      lopt, learning_rate=lopt.learning_rate if learning_rate is None else learning_rate,
      weight_decay=lopt.weight_decay if weight_decay is None else weight_decay)
  schedule = lopt.learning_rate
  if callable(schedule) and isinstance(num_steps, int) and num_steps >= 2:
    if float(schedule(num_steps - 1)) == 0.0 == float(schedule(num_steps - 2)):
      raise ValueError(f"the learning-rate schedule is 0 at steps {num_steps - 2} and "
                       f"{num_steps - 1} of the {num_steps} planned: it ends before the training "
                       "does; build it for num_steps steps")
  return lopt
