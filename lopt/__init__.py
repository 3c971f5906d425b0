"""Learned optimizers for JAX, usable as plain optax transformations.

    import lopt
    tx = lopt.load("checkpoints/<name>")            # an optax.GradientTransformationExtraArgs
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)

``lopt.pretrained(name)`` loads an optimizer shipped in ``checkpoints/`` by name
(``lopt.pretrained_names()``). μP-aware optimizers (``"mu_mlp"``, ``"mu_adafac_mlp"``) read the
parameters' roles: pass ``roles=`` (e.g. ``Task.roles(params)`` or
``lopt.trace_roles(apply_fn, params, x)``, read from the model's computation) or let
``lopt.infer_roles`` guess them from the names.
The direction-only ``"ortho_mlp"`` takes its learning rate and weight decay from outside, as AdamW
does: ``lopt.load(path, learning_rate=3e-3, weight_decay=0.1)`` (a float or an optax schedule).

Hand-designed baselines (Adam, AdamW, Lion, SGD with momentum, Adafactor) with warmup + cosine
schedules come from ``lopt.make_baseline``; ``lopt.search_space`` gives the grids to tune them on.
"""

from lopt.adafac_mlp_lopt import AdafacMLPLOpt, AdafacMLPLOptState
from lopt.base import LearnedOptimizer
from lopt.baselines import BASELINES, grid, learning_rate_schedule, make_baseline, search_space
from lopt.checkpoint import (CheckpointError, CheckpointNotFoundError, load, load_meta_params,
                             read_card, save)
from lopt.mlp_lopt import MLPLOpt, MLPLOptState
from lopt.mu_lopt import MuAdafacMLPLOpt, MuLOptState, MuMLPLOpt
from lopt.optax_export import as_optax
from lopt.ortho_mlp_lopt import OrthoMLPLOpt, OrthoMLPLOptState
from lopt.passport import EnvelopeWarning
from lopt.shipped import pretrained, pretrained_names
from lopt.registry import ARCHITECTURES, make
from lopt.role_tracing import trace_roles
from lopt.roles import ROLES, infer_roles
from lopt.velo_lopt import VeLOLOpt, VeLOLOptState

__all__ = ["ARCHITECTURES", "AdafacMLPLOpt", "AdafacMLPLOptState", "BASELINES", "CheckpointError",
           "CheckpointNotFoundError", "EnvelopeWarning", "LearnedOptimizer", "MLPLOpt", "MLPLOptState", "as_optax",
           "grid", "learning_rate_schedule", "load", "load_meta_params", "make", "make_baseline",
           "OrthoMLPLOpt", "OrthoMLPLOptState", "read_card", "save", "search_space",
           "VeLOLOpt", "VeLOLOptState", "MuAdafacMLPLOpt", "MuLOptState", "MuMLPLOpt",
           "ROLES", "infer_roles", "pretrained", "pretrained_names", "trace_roles"]
