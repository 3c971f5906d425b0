"""Hand-designed baseline optimizers, and the grids they are tuned on, built from optax.

Every baseline is the same three-stage chain: a hand-designed direction ``D_t`` (Adam, Lion, momentum,
Adafactor, Muon), decoupled weight decay, and a learning-rate schedule ``lr_t``:

    u_t = -lr_t * (D_t + lambda * p_t),

exactly ``optax.adamw`` for Adam and ``optax.lion`` for Lion. The decay is decoupled (it never enters
the accumulators, as in AdamW, Loshchilov & Hutter 2019) and follows the schedule; ``adam`` takes no
weight decay (that is ``adamw``). SGD uses momentum 0.9; Adafactor is ``optax.adafactor``'s (factored
second moments, update clipping, steps relative to the parameters' RMS, no momentum).

Muon is ``optax.contrib.muon`` (Jordan et al., 2024) with both of its parts decayed by ``lambda``.
A parameter of rank >= 2 is a matrix of fan-in ``m`` (all axes but the last: a dense ``[in, out]``
or a convolution's ``HWIO`` kernel) by fan-out ``n`` (the last axis); its direction is its Nesterov
momentum ``M_t`` (``beta = 0.95``) orthogonalised by five Newton-Schulz iterations,
``O_t ~ U V^T`` for ``M_t = U S V^T``, rescaled as in Liu et al. (2025, "Muon is scalable for LLM
training"):

    D_t = 0.2 sqrt(max(m, n)) O_t,   RMS(D_t) ~ 0.2,

the typical RMS of AdamW's update. Parameters of other ranks (biases, norms) take Adam's direction
(with Nesterov momentum, as ``optax.contrib.muon`` builds it), so they are updated as by AdamW. One
learning rate thus serves both parts, and Muon is tuned on AdamW's grid.

The schedule (``learning_rate_schedule``) is a linear warmup from 0 over the first
``floor(warmup_fraction * T)`` steps followed by either a cosine decay to 0 at step ``T``
(``"warmup_cosine"``) or a constant (``"constant"``).

``search_space(name)`` is the log grid evaluation tunes each baseline on, per task, to produce the
*tuned* baselines a learned optimizer is compared against.

    tx = make_baseline("adamw", learning_rate=1e-3, num_steps=1000, weight_decay=1e-2)
    for hyperparameters in search_space("adamw"):
      tx = make_baseline("adamw", num_steps=1000, **hyperparameters)
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import optax

SCHEDULES = ("warmup_cosine", "constant")


def _log_grid(lowest_exponent: int, highest_exponent: int) -> tuple[float, ...]:
  """``1eN, 3eN, 1e(N+1), …, 1e(highest)``: about two points per decade."""
  return tuple(float(f"{m}e{e}") for e in range(lowest_exponent, highest_exponent)
               for m in (1, 3)) + (float(f"1e{highest_exponent}"),)


_Build = Callable[[optax.Schedule, float], optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class _Baseline:
  """The optimizer built from a schedule ``lr_t`` and a weight decay ``lambda``, its full grid and
  the coarse grid evaluations tune it on (they extend it past an edge where the best point is)."""
  build: _Build
  learning_rates: tuple[float, ...]
  coarse_learning_rates: tuple[float, ...]
  takes_weight_decay: bool = True
  weight_decays: tuple[float, ...] = ()  # Searched over only where given.
  coarse_weight_decays: tuple[float, ...] = ()


def _decoupled(direction: Callable[[], optax.GradientTransformation]) -> _Build:
  """``u_t = -lr_t (D_t + lambda p_t)`` for the hand-designed direction ``D_t`` of ``direction``."""
  def build(schedule: optax.Schedule, weight_decay: float) -> optax.GradientTransformation:
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(direction(), *decay, optax.scale_by_learning_rate(schedule))
  return build


def _adafactor_direction() -> optax.GradientTransformation:
  """Adafactor (Shazeer & Stern, 2018) as ``optax.adafactor`` builds it, learning rate excepted: the
  factored RMS scaling, update clipping at RMS 1 and the step relative to the parameter's RMS."""
  return optax.chain(optax.scale_by_factored_rms(), optax.clip_by_block_rms(1.0),
                     optax.scale_by_param_block_rms())


MUON_CONSISTENT_RMS = 0.2  # The RMS of Muon's matrix directions: AdamW's typical update RMS.


def _matrix_dimensions(params):
  """Muon's view of each parameter: a matrix of fan-in (all axes but the last) by fan-out (the last
  axis) for rank >= 2, None (AdamW) otherwise."""
  return jax.tree.map(lambda p: optax.contrib.MuonDimensionNumbers(
      reduction_axis=tuple(range(p.ndim - 1)), output_axis=p.ndim - 1) if p.ndim >= 2 else None,
      params)


def _muon(schedule: optax.Schedule, weight_decay: float) -> optax.GradientTransformation:
  """Muon for the matrices, AdamW for the rest, one schedule and decay; see the module docstring."""
  return optax.contrib.muon(schedule, weight_decay=weight_decay, adam_weight_decay=weight_decay,
                            consistent_rms=MUON_CONSISTENT_RMS,
                            muon_weight_dimension_numbers=_matrix_dimensions)


_ADAM_LEARNING_RATES = _log_grid(-4, 0)
_ADAMW_WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1, 1.0)
_ADAM_COARSE = dict(coarse_learning_rates=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1))
_ADAMW_COARSE = dict(_ADAM_COARSE, coarse_weight_decays=(1e-3, 1e-1))
BASELINES: dict[str, _Baseline] = {
    "adam": _Baseline(_decoupled(optax.scale_by_adam), _ADAM_LEARNING_RATES,
                      takes_weight_decay=False, **_ADAM_COARSE),
    "adamw": _Baseline(_decoupled(optax.scale_by_adam), _ADAM_LEARNING_RATES,
                       weight_decays=_ADAMW_WEIGHT_DECAYS, **_ADAMW_COARSE),
    # Lion's sign updates have RMS 1, so its learning rates sit ~10x below Adam's (Chen et al., 2023).
    "lion": _Baseline(_decoupled(optax.scale_by_lion), _log_grid(-5, -1),
                      coarse_learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    "sgd": _Baseline(_decoupled(lambda: optax.trace(decay=0.9)), _log_grid(-3, 1),
                     coarse_learning_rates=(1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)),
    # Adafactor's learning rate is relative to each parameter block's RMS.
    "adafactor": _Baseline(_decoupled(_adafactor_direction), _log_grid(-3, 0),
                           coarse_learning_rates=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)),
    # Muon's updates have AdamW's RMS, so it shares AdamW's grids.
    "muon": _Baseline(_muon, _ADAM_LEARNING_RATES, weight_decays=_ADAMW_WEIGHT_DECAYS,
                      **_ADAMW_COARSE),
}


def _check_name(name: str) -> _Baseline:
  if name not in BASELINES:
    raise ValueError(f"unknown baseline optimizer '{name}'; valid choices: {sorted(BASELINES)}")
  return BASELINES[name]


def learning_rate_schedule(learning_rate: float, num_steps: int, warmup_fraction: float = 0.05,
                           schedule: str = "warmup_cosine") -> optax.Schedule:
  """Linear warmup from 0 to ``learning_rate`` over ``floor(warmup_fraction * num_steps)`` steps,
  then a cosine decay to 0 at ``num_steps`` (``"warmup_cosine"``) or a constant (``"constant"``).
  Steps past ``num_steps`` keep the last value."""
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule '{schedule}'; valid choices: {list(SCHEDULES)}")
  if not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
  if not 0.0 <= warmup_fraction < 1.0:
    raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
  if not learning_rate > 0.0:
    raise ValueError(f"learning_rate must be positive, got {learning_rate}")
  warmup_steps = math.floor(warmup_fraction * num_steps)
  if schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, num_steps)
  if warmup_steps == 0:  # optax's warmup_constant_schedule stays at 0 when it has no warmup steps.
    return optax.constant_schedule(learning_rate)
  return optax.warmup_constant_schedule(0.0, learning_rate, warmup_steps)


def make_baseline(name: str, learning_rate: float, num_steps: int, weight_decay: float = 0.0,
                  warmup_fraction: float = 0.05, schedule: str = "warmup_cosine"
                  ) -> optax.GradientTransformation:
  """The baseline ``name`` (one of ``BASELINES``) with the schedule of ``learning_rate_schedule`` and
  decoupled weight decay ``weight_decay``; see the module docstring for the update."""
  baseline = _check_name(name)
  if weight_decay < 0.0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  if weight_decay and not baseline.takes_weight_decay:
    raise ValueError(f"'{name}' takes no weight decay; use 'adamw' for Adam with decoupled decay")
  return baseline.build(learning_rate_schedule(learning_rate, num_steps, warmup_fraction, schedule),
                        weight_decay)


def grid(name: str, coarse: bool = False) -> dict[str, tuple[float, ...]]:
  """``name``'s ``learning_rates`` (and ``weight_decays``, for ``adamw`` and ``muon``): the full log
  grid, or the coarse one (about one point per half decade, two weight decays) that evaluations
  tune on and extend past an edge."""
  baseline = _check_name(name)
  learning_rates = baseline.coarse_learning_rates if coarse else baseline.learning_rates
  weight_decays = baseline.coarse_weight_decays if coarse else baseline.weight_decays
  return {"learning_rates": learning_rates,
          **({"weight_decays": weight_decays} if weight_decays else {})}


def search_space(name: str, coarse: bool = False) -> list[dict[str, Any]]:
  """The hyperparameters to tune ``name`` over: keyword arguments of ``make_baseline``, one dict per
  point of ``grid(name, coarse)`` (learning rates, times weight decays where it has them)."""
  points = grid(name, coarse)
  return [{"learning_rate": lr, **({"weight_decay": wd} if wd is not None else {})}
          for lr in points["learning_rates"] for wd in points.get("weight_decays", (None,))]
