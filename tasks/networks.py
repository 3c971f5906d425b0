"""MLP and CNN classifiers as haiku functions, in SP or μP (``tasks.mup``).

Call them inside ``hk.transform``. Weights are named after their roles (``tasks.roles``):

- ``mlp``: flatten, then ``relu(Dense)`` layers ``input_0, hidden_1, ...`` of ``hidden_sizes`` and a
  readout ``output``. A layer's width multiplier is its fan-in over ``base_width``.
- ``cnn``: ``depth`` 3x3 'SAME' convolutions with ``width`` channels and relu (``input_conv_0``,
  ``hidden_conv_1``, ...), then a readout ``output`` of the flattened feature map (its fan-in is
  ``height * width_of_image * width``, so its width multiplier is ``width / base_width``).
"""

from collections.abc import Sequence

import haiku as hk
import jax

from tasks.mup import FAN_IN_INIT, Dense


def mlp(x: jax.Array, hidden_sizes: Sequence[int], num_outputs: int, parametrization: str,
        base_width: int) -> jax.Array:
  """Logits ``[batch, num_outputs]`` of the MLP on ``x`` ``[batch, ...]``."""
  x = x.reshape(x.shape[0], -1)
  for i, size in enumerate(hidden_sizes):
    role = "input" if i == 0 else "hidden"
    x = jax.nn.relu(Dense(size, role, parametrization, name=f"{role}_{i}")(x))
  return Dense(num_outputs, "output", parametrization, name="output",
               width_mult=hidden_sizes[-1] / base_width)(x)


def cnn(images: jax.Array, width: int, depth: int, num_outputs: int, parametrization: str,
        base_width: int) -> jax.Array:
  """Logits ``[batch, num_outputs]`` of the CNN on ``images`` ``[batch, height, width, channels]``."""
  x = images
  for i in range(depth):
    role = "input" if i == 0 else "hidden"
    conv = hk.Conv2D(width, 3, padding="SAME", w_init=FAN_IN_INIT, name=f"{role}_conv_{i}")
    x = jax.nn.relu(conv(x))
  x = x.reshape(x.shape[0], -1)
  return Dense(num_outputs, "output", parametrization, name="output",
               width_mult=width / base_width)(x)
