"""The antithetic ES estimator against gradients known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np

from metatrain import es

SAMPLES = 40_000


def _per_sample_estimates(loss_fn, theta, sigma, key):
  """Antithetic estimates from single pairs, so their spread gives the estimator's standard error."""
  eps = es.sample_perturbations(key, theta, SAMPLES, sigma)
  loss_pos = jax.vmap(lambda e: loss_fn(theta + e))(eps)
  loss_neg = jax.vmap(lambda e: loss_fn(theta - e))(eps)
  mean = es.antithetic_gradient(eps, loss_pos, loss_neg, sigma)
  singles = jax.vmap(lambda e, lp, ln: es.antithetic_gradient(e[None], lp[None], ln[None], sigma))(
      eps, loss_pos, loss_neg)
  standard_error = jnp.std(singles, axis=0) / np.sqrt(SAMPLES)
  return np.asarray(mean), np.asarray(standard_error)


def test_es_matches_the_gradient_of_a_quadratic():
  """On a quadratic, Gaussian smoothing adds a constant, so the smoothed gradient is A theta + b."""
  key_a, key_b, key_eps = jax.random.split(jax.random.PRNGKey(0), 3)
  m = jax.random.normal(key_a, (6, 6))
  a = m @ m.T / 6 + jnp.eye(6)
  b = jax.random.normal(key_b, (6,))
  theta = jnp.linspace(-1.0, 1.0, 6)
  loss = lambda t: 0.5 * t @ a @ t + b @ t
  estimate, standard_error = _per_sample_estimates(loss, theta, 0.1, key_eps)
  exact = np.asarray(a @ theta + b)
  np.testing.assert_array_less(np.abs(estimate - exact), 4 * standard_error + 1e-6)


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
