"""Exports a learned optimizer with fixed meta-parameters as a plain optax transformation."""

import optax

from lopt.base import LearnedOptimizer, MetaParams, Params


def as_optax(lopt: LearnedOptimizer, theta: MetaParams, num_steps: int,
             roles: Params | None = None) -> optax.GradientTransformationExtraArgs:
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
  architectures (μLO), which infer them from the parameters when it is ``None``; others ignore it.
  """
  if isinstance(num_steps, int) and num_steps < 1:
    raise ValueError(f"num_steps must be a positive number of training steps, got {num_steps}")

  def init_fn(params):
    return lopt.init(theta, params, num_steps, roles)

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(f"the learned optimizer '{lopt.name}' reads the parameters: call "
                       "update(grads, state, params) with params")
    return lopt.update(theta, state, updates, params, value)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
