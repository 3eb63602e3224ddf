"""Samplers on a Gaussian teacher, whose probability-flow ODE has a closed-form solution."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import diffusion, samplers
from fastgen.teachers import analytic

MEAN = np.array([0.5, -1.0, 2.0])
EIGVALS = np.array([0.05, 0.6, 2.0])


def _gaussian():
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  cov = q @ np.diag(EIGVALS) @ q.T
  teacher = analytic.GaussianMixtureTeacher((3,))
  return teacher, analytic.mixture_params([1.0], MEAN[None], cov[None]), q


def _exact_ode_map(x_start, sigma_start, q):
  """For N(mu, S) the PF-ODE gives x(0) = mu + S^1/2 (S + s^2)^-1/2 (x(s) - mu) per eigenvector."""
  scale = np.sqrt(EIGVALS / (EIGVALS + sigma_start**2))
  return MEAN + ((x_start - MEAN) @ q) * scale @ q.T


@pytest.mark.parametrize('method', ['heun', 'euler'])
def test_sampler_converges_to_the_exact_ode_solution(method):
  teacher, params, q = _gaussian()
  noise = jax.random.normal(jax.random.key(0), (512, 3))
  exact = _exact_ode_map(80.0 * np.asarray(noise, np.float64), 80.0, q)
  errors = []
  for steps in (4, 8, 16, 32):
    run = jax.jit(functools.partial(samplers.sample, teacher, method=method, num_steps=steps),
                  static_argnames='shape')
    x = run(params, jax.random.key(0), shape=(512, 3))
    errors.append(float(np.max(np.abs(np.asarray(x, np.float64) - exact))))
  assert all(b < a for a, b in zip(errors, errors[1:])), errors
  # Heun is second order (doubling the steps cuts the error ~4x), Euler first order (~2x).
  order = 2 if method == 'heun' else 1
  assert errors[-2] / errors[-1] > 0.8 * 2**order, errors
  assert errors[-1] < (0.1 if method == 'heun' else 0.5), errors


def test_heun_reproduces_the_gaussian_marginal():
  teacher, params, q = _gaussian()
  # Started from N(0, 80^2 I) rather than the true N(mu, S + 80^2 I), the exact ODE map gives
  # mean mu - S^1/2 (S + 80^2)^-1/2 mu and covariance S 80^2 / (S + 80^2), per eigenvector.
  shrink = np.sqrt(EIGVALS / (EIGVALS + 80.0**2))
  mean = MEAN - ((MEAN @ q) * shrink) @ q.T
  cov = q @ np.diag(EIGVALS * 80.0**2 / (EIGVALS + 80.0**2)) @ q.T
  num = 100_000
  noise_floor = 5 * np.sqrt(2 * EIGVALS.max() ** 2 / num)  # ~5 standard errors of a cov entry
  cov_errors = []
  for steps in (8, 16, 32, 64):
    x = samplers.sample(teacher, params, jax.random.key(3), (num, 3), method='heun',
                        num_steps=steps)
    x = np.asarray(x, np.float64)
    cov_errors.append(np.abs(np.cov(x.T) - cov).max())
  assert all(b < a for a, b in zip(cov_errors, cov_errors[1:]) if a > noise_floor), cov_errors
  assert cov_errors[-1] < noise_floor, (cov_errors, noise_floor)
  np.testing.assert_allclose(x.mean(0), mean, atol=5 * np.sqrt(EIGVALS.max() / num))


def test_ddim_step_is_euler_and_flow_euler_matches_edm_euler():
  teacher, params, _ = _gaussian()
  x = jax.random.normal(jax.random.key(1), (8, 3)) * 2
  sigma, sigma_next = 2.0, 0.7
  x0 = teacher(params, x, sigma)
  euler = x + (sigma_next - sigma) * (x - x0) / sigma
  np.testing.assert_allclose(samplers.ddim_step(x, x0, sigma, sigma_next), euler, rtol=1e-5,
                             atol=1e-6)
  # Euler in flow time t on x_t = x/(1+sigma) equals Euler in sigma on the same grid (the ODEs are
  # the same up to the change of variables, and Euler is exact for it only in the limit; compare
  # the converged answers instead).
  ts = jnp.linspace(0.999, 0.0, 400)
  noise = jax.random.normal(jax.random.key(2), (64, 3))
  velocity = lambda x_t, t: teacher.velocity(params, x_t, t)
  flow = samplers.flow_euler_sampler(velocity, noise * ts[0], ts)
  sigmas = diffusion.flow_t_to_sigma(ts)
  edm = samplers.heun_sampler(samplers.denoise_closure(teacher, params),
                              noise * ts[0] / (1 - ts[0]) / sigmas[0], sigmas)
  np.testing.assert_allclose(flow, edm, atol=2e-2)


def test_unknown_sampler_is_named():
  teacher, params, _ = _gaussian()
  with pytest.raises(ValueError, match="unknown sampler 'rk4'.*heun"):
    samplers.sample(teacher, params, jax.random.key(0), (2, 3), method='rk4')


def test_multistep_sigmas_start_exactly_at_sigma_start_on_the_karras_grid():
  sigmas = samplers.multistep_sigmas(4, 0.002, 2.5, 7.0)
  assert sigmas.shape == (4,) and float(sigmas[0]) == 2.5
  np.testing.assert_allclose(sigmas[1:], diffusion.karras_sigmas(5, 0.002, 2.5, 7.0)[1:4],
                             rtol=1e-6)


@pytest.mark.parametrize('sigma_out', [0.0, 0.3])
def test_multistep_sample_renoises_to_each_sigma(sigma_out):
  # With f(x, sigma) = x the walk is sigma_0 z_0 + sum_i sqrt(sigma_i^2 - sigma_out^2) z_i: its
  # variance tells the noise added at every step (Song et al. 2023, Algorithm 1).
  sigmas = jnp.array([3.0, 2.0, 1.0, 0.5])
  calls = []
  one_step = lambda x, sigma: calls.append(float(sigma)) or x
  x = samplers.multistep_sample(one_step, jax.random.key(0), (200_000,), sigmas, sigma_out)
  assert calls == [3.0, 2.0, 1.0, 0.5]
  expected = 9.0 + sum(s**2 - sigma_out**2 for s in (2.0, 1.0, 0.5))
  np.testing.assert_allclose(np.var(np.asarray(x)), expected, rtol=0.01)
