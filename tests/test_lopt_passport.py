"""The generalization passport: ``lopt.load`` / ``lopt.pretrained`` warn once, citing the card, when
a training leaves what the optimizer was meta-trained and evaluated on, and stay silent inside it.
Checked on a shipped optimizer's real card (meta-trained on digits MLPs of widths 32-128 with two
hidden layers, trainings of up to 2000 steps, evaluated on every suite)."""

import warnings

import jax
import jax.numpy as jnp
import pytest

import lopt
from lopt.passport import EnvelopeWarning

SHIPPED = "mulo-digits-mlp-h2000-late"


def mlp_params(*sizes: int, conv: bool = False) -> dict:
  params = {f"layer_{i}": {"w": jnp.zeros((a, b)), "b": jnp.zeros(b)}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}
  if conv:
    params["conv"] = {"w": jnp.zeros((3, 3, 1, 8)), "b": jnp.zeros(8)}
  return params


def envelope_warnings(params, num_steps: int) -> list[str]:
  tx = lopt.pretrained(SHIPPED, num_steps=num_steps, roles="infer")
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tx.init(params)
    tx.init(params)  # Warns once per transformation, not per init.
  return [str(w.message) for w in caught if issubclass(w.category, EnvelopeWarning)]


def test_a_training_inside_the_envelope_is_silent():
  assert envelope_warnings(mlp_params(64, 128, 128, 10), 1000) == []
  assert envelope_warnings(mlp_params(64, 256, 256, 10), 2000) == []  # Within 2x its width.


def test_a_longer_training_warns_once_with_the_cards_result_at_that_length():
  [message] = envelope_warnings(mlp_params(64, 128, 128, 10), 50000)
  assert message.startswith(f"the learned optimizer '{SHIPPED}' is used outside what it was")
  # The card's horizon suite: at 25x, 0.2586 against tuned AdamW's 0.0480 on width 128.
  assert "you plan 50000 steps, 25x its horizon of 2000: at 25x its card records 5.4x tuned " \
         "AdamW's final training loss" in message


def test_wider_deeper_and_convolutional_models_each_add_a_clause():
  [message] = envelope_warnings(mlp_params(64, *[2048] * 8, 10), 2000)
  assert "your widest layer has 2048 units, 16x its widest meta-training task's 128: at 16x its " \
         "card records" in message
  assert "your model has 9 weight matrices, 3x the 3 of its deepest meta-training task: at 4x its " \
         "card records" in message  # The depth suite ran 2x and 4x; 4x is nearer to 3x.
  [message] = envelope_warnings(mlp_params(64, 32, 10, conv=True), 2000)
  assert "your model has convolution kernels and it was meta-trained on no CNN: on a small CNN " \
         "its card records 6.2x tuned AdamW's final training loss" in message


def test_a_card_without_a_meta_training_config_is_checked_on_its_horizon(tmp_path):
  lo = lopt.MLPLOpt(hidden_size=4)
  lopt.save(tmp_path / "bare", lo, lo.init_meta_params(jax.random.PRNGKey(0)), {"num_steps": 20})
  params = mlp_params(4096, 4096, 10, conv=True)
  with warnings.catch_warnings():
    warnings.simplefilter("error", EnvelopeWarning)
    lopt.load(tmp_path / "bare").init(params)
  with pytest.warns(EnvelopeWarning, match="you plan 40 steps, 2x its horizon of 20: its card has "
                                           "no 'horizon' evaluation there"):
    lopt.load(tmp_path / "bare", num_steps=40).init(params)
