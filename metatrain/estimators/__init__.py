"""Meta-gradient estimators behind one interface.

An estimator has ``init(theta, key) -> state`` (the population's inner trainings) and
``grad(theta, state, key) -> (meta_gradient, state, metrics)``; ``metrics`` holds at least
``meta_loss``, ``diverged_fraction`` and ``grad_variance`` (see ``metatrain.aggregate``).
"""

from ml_collections import ConfigDict

from metatrain.estimators.full_es import FullES
from metatrain.estimators.pes import PES
from metatrain.estimators.tbptt import TruncatedBackprop
from metatrain.estimators.truncated_es import TruncatedES
from metatrain.inner_training import InnerTraining

ESTIMATORS = {"truncated_es": TruncatedES, "pes": PES, "tbptt": TruncatedBackprop,
              "full_es": FullES}


def build_estimator(config: ConfigDict, family, lopt):
  """The estimator ``config.estimator.name`` over tasks of ``family`` trained by ``lopt``."""
  est = config.estimator
  inner = InnerTraining(family=family, lopt=lopt, unroll_length=est.unroll_length,
                        horizon=est.horizon, loss_clip=est.loss_clip, meta_loss=est.meta_loss)
  if est.name == "tbptt":
    return TruncatedBackprop(inner, est.population, remat=est.remat)
  return ESTIMATORS[est.name](inner, est.population, est.sigma)
