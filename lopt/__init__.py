"""Learned optimizers for JAX, usable as plain optax transformations.

    import lopt
    tx = lopt.load("checkpoints/<name>")            # an optax.GradientTransformationExtraArgs
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
"""

from lopt.base import LearnedOptimizer
from lopt.checkpoint import CheckpointError, load, load_meta_params, read_card, save
from lopt.mlp_lopt import MLPLOpt, MLPLOptState
from lopt.optax_export import as_optax
from lopt.registry import ARCHITECTURES, make

__all__ = ["ARCHITECTURES", "CheckpointError", "LearnedOptimizer", "MLPLOpt", "MLPLOptState",
           "as_optax", "load", "load_meta_params", "make", "read_card", "save"]
