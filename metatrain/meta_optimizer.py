"""The meta-optimizer: how theta follows the meta-gradient (``config.outer``).

Adam on theta (``weight_decay > 0``: AdamW, whose decay ``-lr * weight_decay * theta`` is decoupled
from Adam's normalised step), at the learning rate of ``schedule``:

- ``constant``: ``learning_rate`` at every step;
- ``warmup_cosine``: with ``lr = learning_rate``, ``lr_T = final_learning_rate``, ``W =
  warmup_steps`` and ``T = steps``, the update of outer step ``t = 1 .. T`` uses ``lr * t / W`` for
  ``t <= W`` (a linear warmup), then ``lr_T + (lr - lr_T) (1 + cos(pi (t - W) / (T - W))) / 2``
  (a cosine decay that reaches ``lr_T`` at ``t = T``). A run continued with more ``steps``
  (``--resume``) goes on from the step it had reached on the schedule of its new ``steps``.

``clip`` bounds a step by a global norm of ``max_grad_norm``:

- ``gradient``: the meta-gradient is clipped before Adam (which, being invariant to its input's
  scale, feels it only through its moment estimates);
- ``update``: the update itself is clipped after AdamW and the learning rate, so that no step
  moves theta by more than ``max_grad_norm`` (μLO's meta-training clips AdamW's update at 1.0):
  a rare large step of a noisy estimate is shortened whatever the schedule.

An update with a non-finite meta-gradient is skipped (``optax.apply_if_finite``, up to 10 in a
row); a skipped update does not advance the schedule.
"""

import optax
from ml_collections import ConfigDict

SCHEDULES = ("constant", "warmup_cosine")
CLIPS = ("gradient", "update")


def learning_rate(outer: ConfigDict) -> float | optax.Schedule:
  """The learning rate (or schedule, of the number of updates made so far) that ``outer`` sets."""
  if outer.schedule == "constant":
    return outer.learning_rate
  if outer.schedule == "warmup_cosine":
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=outer.learning_rate, warmup_steps=outer.warmup_steps,
        decay_steps=outer.steps, end_value=outer.final_learning_rate)
    return lambda count: schedule(count + 1)  # Outer step t = count + 1 makes update `count`.
  raise ValueError(f"unknown schedule '{outer.schedule}'; valid choices: {list(SCHEDULES)}")


def build_meta_optimizer(config: ConfigDict) -> optax.GradientTransformation:
  """Adam or AdamW on theta with the configured schedule and clipping; see the module docstring."""
  outer = config.outer
  if outer.clip not in CLIPS:
    raise ValueError(f"unknown clip '{outer.clip}'; valid choices: {list(CLIPS)}")
  rate = learning_rate(outer)
  adam = (optax.adamw(rate, weight_decay=outer.weight_decay) if outer.weight_decay > 0
          else optax.adam(rate))
  clip = optax.clip_by_global_norm(outer.max_grad_norm)
  steps = (clip, adam) if outer.clip == "gradient" else (adam, clip)
  return optax.apply_if_finite(optax.chain(*steps), max_consecutive_errors=10)
