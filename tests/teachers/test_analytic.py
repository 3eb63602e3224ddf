"""The closed-form mixture denoiser is exactly E[x0 | x]."""

import jax
import jax.numpy as jnp
import numpy as np

from fastgen.evaluation import exact
from fastgen.teachers import analytic


def _mixture():
  weights = np.array([0.5, 0.3, 0.2])
  means = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
  covs = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.6]], [[0.5, -0.2], [-0.2, 0.3]]])
  return weights, means, covs


def test_denoiser_matches_monte_carlo_posterior_mean():
  weights, means, covs = _mixture()
  teacher = analytic.GaussianMixtureTeacher((2,))
  params = analytic.mixture_params(weights, means, covs)
  x0 = np.asarray(teacher.sample(params, jax.random.key(0), 2_000_000), np.float64)
  queries = np.array([[-1.0, 0.5], [1.5, 0.0], [0.3, -1.7]])
  for sigma in (0.3, 1.0, 3.0):
    # E[x0 | x] = sum_i x0_i N(x; x0_i, sigma^2) / sum_i N(x; x0_i, sigma^2), x0_i ~ p.
    log_lik = -np.sum((queries[:, None] - x0[None]) ** 2, -1) / (2 * sigma**2)
    w = np.exp(log_lik - log_lik.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    mc = w @ x0
    ess = 1.0 / np.sum(w**2, 1)
    stderr = np.sqrt(np.einsum('qn,qnd->qd', w, (x0[None] - mc[:, None]) ** 2) / ess[:, None])
    exact = np.asarray(teacher(params, jnp.asarray(queries), sigma))
    assert np.all(np.abs(exact - mc) < 5 * stderr + 1e-3), (sigma, exact, mc, stderr)


def test_exact_samples_have_the_mixture_moments():
  weights, means, covs = _mixture()
  teacher = analytic.GaussianMixtureTeacher((2,))
  params = analytic.mixture_params(weights, means, covs)
  mean, cov = exact.mixture_moments(*exact.mixture_from_teacher(params))
  expected_mean = weights @ means
  np.testing.assert_allclose(mean, expected_mean, rtol=1e-5)
  x = np.asarray(teacher.sample(params, jax.random.key(1), 400_000))
  np.testing.assert_allclose(x.mean(0), mean, atol=0.01)
  np.testing.assert_allclose(np.cov(x.T), cov, atol=0.02)


def test_labels_select_their_components_and_null_label_sees_all():
  weights, means, covs = _mixture()
  teacher = analytic.GaussianMixtureTeacher((2,), num_classes=3)
  params = analytic.mixture_params(weights, means, covs, labels=[0, 1, 2])
  x = jnp.zeros((3, 2))
  # At huge noise the posterior mean is the prior mean of the selected components.
  out = teacher(params, x, 1e4, labels=jnp.array([0, 1, 2]))
  np.testing.assert_allclose(out, means, atol=1e-3)
  out_null = teacher(params, x[:1], 1e4, labels=jnp.array([3]))
  np.testing.assert_allclose(out_null[0], weights @ means, atol=1e-3)
  samples = teacher.sample(params, jax.random.key(0), 3000, labels=jnp.full((3000,), 1))
  np.testing.assert_allclose(samples.mean(0), means[1], atol=0.05)


def test_tiny_noise_returns_input_and_fit_recovers_a_gaussian():
  rng = np.random.default_rng(0)
  x = rng.multivariate_normal([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]], size=20000)
  weights, means, covs, labels = analytic.fit_mixture(x, reg_covar=1e-6)
  np.testing.assert_allclose(means[0], [1.0, -1.0], atol=0.05)
  np.testing.assert_allclose(covs[0], [[1.0, 0.5], [0.5, 2.0]], atol=0.08)
  teacher = analytic.GaussianMixtureTeacher((2,))
  params = analytic.mixture_params(weights, means, covs, labels)
  q = jnp.asarray(x[:5], jnp.float32)
  np.testing.assert_allclose(teacher(params, q, 1e-4), q, atol=1e-4)
