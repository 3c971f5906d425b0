"""The antithetic ES estimator against gradients known in closed form, and its shapings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metatrain import es

SAMPLES = 40_000
SHAPED = [s for s in es.SHAPINGS if s != "none"]


def _quadratic():
  """``(loss, theta, gradient)`` of ``0.5 t'At + b't`` at some theta; Gaussian smoothing adds a
  constant to a quadratic, so its smoothed gradient is the plain one, ``A theta + b``."""
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  m = jax.random.normal(key_a, (6, 6))
  a = m @ m.T / 6 + jnp.eye(6)
  b = jax.random.normal(key_b, (6,))
  theta = jnp.linspace(-1.0, 1.0, 6)
  return lambda t: 0.5 * t @ a @ t + b @ t, theta, a @ theta + b


def _antithetic_losses(loss_fn, theta, eps):
  return jax.vmap(lambda e: loss_fn(theta + e))(eps), jax.vmap(lambda e: loss_fn(theta - e))(eps)


def _per_sample_estimates(loss_fn, theta, sigma, key):
  """Antithetic estimates from single pairs, so their spread gives the estimator's standard error."""
  eps = es.sample_perturbations(key, theta, SAMPLES, sigma)
  loss_pos, loss_neg = _antithetic_losses(loss_fn, theta, eps)
  mean = es.antithetic_gradient(eps, loss_pos, loss_neg, sigma)
  singles = jax.vmap(lambda e, lp, ln: es.antithetic_gradient(e[None], lp[None], ln[None], sigma))(
      eps, loss_pos, loss_neg)
  standard_error = jnp.std(singles, axis=0) / np.sqrt(SAMPLES)
  return np.asarray(mean), np.asarray(standard_error)


def test_es_matches_the_gradient_of_a_quadratic():
  loss, theta, exact = _quadratic()
  estimate, standard_error = _per_sample_estimates(loss, theta, 0.1, jax.random.PRNGKey(3))
  np.testing.assert_array_less(np.abs(estimate - np.asarray(exact)), 4 * standard_error + 1e-6)


def test_es_matches_the_smoothed_gradient_not_the_raw_one():
  """For sum(sin(theta)), E[sin(theta + eps)] = sin(theta) exp(-sigma^2 / 2) coordinate-wise."""
  sigma = 0.8
  theta = jnp.array([0.3, -1.2, 2.0, 0.0])
  loss = lambda t: jnp.sum(jnp.sin(t))
  estimate, standard_error = _per_sample_estimates(loss, theta, sigma, jax.random.PRNGKey(1))
  smoothed = np.asarray(jnp.cos(theta) * jnp.exp(-sigma**2 / 2))
  raw = np.asarray(jnp.cos(theta))
  np.testing.assert_array_less(np.abs(estimate - smoothed), 4 * standard_error)
  assert np.max(np.abs(estimate - raw) / standard_error) > 10


@pytest.mark.parametrize("shaping", SHAPED)
def test_shaped_estimates_point_along_the_gradient(shaping):
  """With 64 pairs in 6 dimensions, the shaped estimate's direction is the gradient's; its length
  is about 1 (the shapings estimate the unit vector along the gradient, see ``pair_weights``)."""
  loss, theta, exact = _quadratic()
  cosines, norms = [], []
  for key in jax.random.split(jax.random.PRNGKey(4), 50):
    eps = es.sample_perturbations(key, theta, 64, 0.1)
    estimate = es.antithetic_gradient(eps, *_antithetic_losses(loss, theta, eps), 0.1,
                                      shaping=shaping)
    cosines.append(estimate @ exact / jnp.linalg.norm(estimate) / jnp.linalg.norm(exact))
    norms.append(jnp.linalg.norm(estimate))
  assert np.mean(cosines) > 0.9, np.mean(cosines)
  assert 0.8 < np.mean(norms) < 1.4, np.mean(norms)


@pytest.mark.parametrize("shaping", SHAPED)
def test_shaped_estimates_ignore_how_the_losses_are_scaled_or_transformed(shaping):
  """Sign and rank depend only on the order of the losses: scaling them, or any increasing
  transformation, gives the same estimate (the unshaped one scales with them)."""
  loss, theta, _ = _quadratic()
  eps = es.sample_perturbations(jax.random.PRNGKey(5), theta, 32, 0.1)
  loss_pos, loss_neg = _antithetic_losses(loss, theta, eps)
  estimate = lambda transform, shaping: es.antithetic_gradient(
      eps, transform(loss_pos), transform(loss_neg), 0.1, shaping=shaping)
  plain = estimate(lambda x: x, shaping)
  for transform in (lambda x: 1000.0 * x + 7.0, lambda x: 0.001 * x, jnp.exp,
                    lambda x: x**3 + jnp.tanh(x)):
    np.testing.assert_allclose(estimate(transform, shaping), plain, rtol=1e-6)
  unshaped = estimate(lambda x: x, "none")
  np.testing.assert_allclose(estimate(lambda x: 1000.0 * x, "none"), 1000.0 * unshaped, rtol=1e-4)


@pytest.mark.parametrize("shaping", es.SHAPINGS)
def test_invalid_pairs_take_no_part_in_the_estimate(shaping):
  """Pairs that diverged, whatever their losses, change neither the ranking nor the mean: the
  estimate is the one of the valid pairs alone."""
  loss, theta, _ = _quadratic()
  eps = es.sample_perturbations(jax.random.PRNGKey(6), theta, 12, 0.1)
  loss_pos, loss_neg = _antithetic_losses(loss, theta, eps)
  valid = jnp.arange(12) % 3 != 0
  poisoned_pos = jnp.where(valid, loss_pos, jnp.nan)
  poisoned_neg = jnp.where(valid, loss_neg, -1e30)
  with_invalid = es.antithetic_gradient(eps, poisoned_pos, poisoned_neg, 0.1, valid, shaping)
  only_valid = es.antithetic_gradient(eps[valid], loss_pos[valid], loss_neg[valid], 0.1,
                                      shaping=shaping)
  np.testing.assert_allclose(with_invalid, only_valid, rtol=1e-6)


def test_centered_ranks_span_minus_half_to_half_and_share_ties():
  losses = jnp.array([3.0, 1.0, 2.0, 2.0, 9.0, -5.0])
  valid = jnp.array([True, True, True, True, True, False])
  np.testing.assert_allclose(es.centered_ranks(losses, valid),
                             [0.25, -0.5, -0.125, -0.125, 0.5, 0.0])


def test_an_unknown_shaping_names_the_valid_ones():
  with pytest.raises(ValueError, match="unknown shaping 'rank'; valid choices: "
                                       r"\['none', 'sign', 'centered_rank'\]"):
    es.pair_weights(jnp.zeros(2), jnp.zeros(2), 0.1, jnp.ones(2, bool), "rank")
