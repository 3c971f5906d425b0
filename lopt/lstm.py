"""A single-layer LSTM cell (Hochreiter & Schmidhuber, 1997) as a pure function of arrays.

For an input ``x`` and state ``(h, c)``, with ``[a, b] W`` the product of the concatenation of ``a``
and ``b`` with ``W``:

    [i, f, o, u] = [x, h] W + b
    c'           = sigmoid(f + 1) c + sigmoid(i) tanh(u)
    h'           = sigmoid(o) tanh(c')

The ``+ 1`` on the forget gate (as in haiku's ``LSTM``; Jozefowicz et al., 2015) makes a fresh cell
keep most of its memory. Leading axes of ``x`` and the state are a batch of independent cells that
share ``W`` and ``b`` (e.g. one cell per parameter tensor).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

FORGET_BIAS = 1.0

LSTMParams = dict[str, jax.Array]


class LSTMState(NamedTuple):
  """The hidden state ``h`` and the cell ``c``, each of shape ``batch + (hidden_size,)``."""
  hidden: jax.Array
  cell: jax.Array


def init(key: jax.Array, input_size: int, hidden_size: int) -> LSTMParams:
  """Returns ``{"w": (input_size + hidden_size, 4 hidden_size), "b": (4 hidden_size,)}``: normal
  weights of variance ``1 / fan_in`` and zero biases."""
  fan_in = input_size + hidden_size
  return {"w": jax.random.normal(key, (fan_in, 4 * hidden_size)) / jnp.sqrt(fan_in),
          "b": jnp.zeros((4 * hidden_size,))}


def zero_state(batch_size: int, hidden_size: int) -> LSTMState:
  """The state of ``batch_size`` cells that have seen nothing."""
  zeros = jnp.zeros((batch_size, hidden_size), jnp.float32)
  return LSTMState(zeros, zeros)


def apply(params: LSTMParams, x: jax.Array, state: LSTMState) -> tuple[jax.Array, LSTMState]:
  """One step of the cell; returns the output ``h'`` and the next state ``(h', c')``."""
  gates = jnp.concatenate([x, state.hidden], axis=-1) @ params["w"] + params["b"]
  i, f, o, u = jnp.split(gates, 4, axis=-1)
  cell = jax.nn.sigmoid(f + FORGET_BIAS) * state.cell + jax.nn.sigmoid(i) * jnp.tanh(u)
  hidden = jax.nn.sigmoid(o) * jnp.tanh(cell)
  return hidden, LSTMState(hidden, cell)
