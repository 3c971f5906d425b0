"""Meta-gradient estimators behind one interface.

An estimator has ``init(theta, data, key) -> state`` (the population's inner trainings) and
``grad(theta, data, state, key) -> (meta_gradient, state, metrics)``, where ``data`` is the task
family's (or mixture's) ``data()``, passed as an argument of the caller's ``jit`` so that compiled
programs do not hold the datasets as constants (``tasks.base``); ``metrics`` holds at least
``meta_loss``, ``diverged_fraction`` and ``grad_variance`` (see ``metatrain.aggregate``). Over a
mixture of task families, one estimator of the configured kind runs per family slice
(``MixtureEstimator``).
"""

from ml_collections import ConfigDict

from metatrain.estimators.full_es import FullES
from metatrain.estimators.mixture import MixtureEstimator
from metatrain.estimators.nres import NRES
from metatrain.estimators.pes import PES
from metatrain.estimators.tbptt import TruncatedBackprop
from metatrain.estimators.truncated_es import TruncatedES
from metatrain.inner_training import InnerTraining
from tasks import Mixture

ESTIMATORS = {"truncated_es": TruncatedES, "pes": PES, "nres": NRES, "tbptt": TruncatedBackprop,
              "full_es": FullES}


def build_estimator(config: ConfigDict, family, lopt):
  """The estimator ``config.estimator.name`` over tasks of ``family`` (or a ``tasks.Mixture``)
  trained by ``lopt``."""
  est = config.estimator
  if isinstance(family, Mixture):
    sizes = family.slice_sizes(est.population)
    return MixtureEstimator(
        tuple(_single_estimator(est, member, lopt, size)
              for member, size in zip(family.families, sizes)), family.names)
  return _single_estimator(est, family, lopt, est.population)


def _single_estimator(est: ConfigDict, family, lopt, population: int):
  inner = InnerTraining(family=family, lopt=lopt, unroll_length=est.unroll_length,
                        horizon=est.horizon, loss_clip=est.loss_clip, meta_loss=est.meta_loss,
                        min_horizon=est.min_horizon or None, normalization=est.normalization,
                        loss_weight_power=est.loss_weight_power,
                        horizon_sampling=est.horizon_sampling)
  if est.name == "tbptt":
    return TruncatedBackprop(inner, population, remat=est.remat)
  return ESTIMATORS[est.name](inner, population, est.sigma, est.shaping)
