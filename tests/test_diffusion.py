"""The noise language: conversions are mutual inverses and agree with each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import diffusion


def test_preconditioning_identities():
  sigma = jnp.array([0.01, 0.5, 3.0, 80.0])
  sd = 0.5
  c_skip, c_out, c_in, c_noise = diffusion.edm_preconditioning(sigma, sd)
  # Unit-variance network input and target (EDM Eqs. 115-117).
  np.testing.assert_allclose(c_in**2 * (sd**2 + sigma**2), 1.0, rtol=1e-6)
  np.testing.assert_allclose((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2, c_out**2, rtol=1e-5)
  np.testing.assert_allclose(diffusion.edm_loss_weight(sigma, sd), 1 / c_out**2, rtol=1e-5)
  np.testing.assert_allclose(c_noise, jnp.log(sigma) / 4)


def test_continuous_karras_grid_runs_from_sigma_min_to_sigma_max():
  u = jnp.linspace(0.0, 1.0, 101)
  s = diffusion.karras_sigma(u)
  np.testing.assert_allclose([s[0], s[-1]], [0.002, 80.0], rtol=1e-5)
  assert bool(jnp.all(jnp.diff(s) > 0))
  # EDM Eq. 5's N points are the continuous grid at u = 1 - i / (N - 1).
  np.testing.assert_allclose(diffusion.karras_sigmas(8)[:-1],
                             diffusion.karras_sigma(1 - jnp.arange(8) / 7), rtol=1e-6)
  sigma = diffusion.sample_karras_sigma(jax.random.key(0), (10_000,), 0.02, 0.98)
  assert float(diffusion.karras_sigma(0.02)) <= float(sigma.min())
  assert float(sigma.max()) <= float(diffusion.karras_sigma(0.98))


def test_karras_grid():
  s = diffusion.karras_sigmas(18)
  assert s.shape == (19,)
  np.testing.assert_allclose([s[0], s[-2], s[-1]], [80.0, 0.002, 0.0], rtol=1e-5)
  assert bool(jnp.all(jnp.diff(s) < 0))
  with pytest.raises(ValueError, match='num_steps'):
    diffusion.karras_sigmas(0)


def test_flow_conversions_are_consistent():
  rng = jax.random.key(0)
  x0, eps = jax.random.normal(rng, (2, 4, 3))
  t = jnp.array([0.1, 0.3, 0.9, 0.99])
  x_t = diffusion.flow_interpolate(x0, eps, t)
  sigma = diffusion.flow_t_to_sigma(t)
  # x_t / (1 - t) is the EDM sample x0 + sigma eps.
  np.testing.assert_allclose(diffusion.flow_to_edm(x_t, t), x0 + sigma[:, None] * eps, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(diffusion.sigma_to_flow_t(sigma), t, rtol=1e-6)
  np.testing.assert_allclose(diffusion.edm_to_flow(diffusion.flow_to_edm(x_t, t), sigma), x_t,
                             rtol=1e-5, atol=1e-6)
  v = eps - x0
  np.testing.assert_allclose(diffusion.velocity_to_x0(x_t, t, v), x0, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(diffusion.x0_to_velocity(x_t, t, x0), v, rtol=1e-4, atol=1e-4)


def test_vp_grid_is_decreasing_and_ends_at_zero():
  s = diffusion.vp_sigmas(10)
  assert s[-1] == 0 and bool(jnp.all(jnp.diff(s) < 0))
  np.testing.assert_allclose(s[0], diffusion.vp_sigma(1.0), rtol=1e-6)


def test_u_shaped_time_density_is_the_papers():
  # p(t) ∝ exp(a t) + exp(a (1 - t)), a = 4: compare histogram masses with the integral.
  t = np.asarray(diffusion.sample_flow_time(jax.random.key(0), (400_000,), 'u_shaped', 1e-5,
                                            1 - 1e-5, 4.0))
  assert 1e-5 <= t.min() and t.max() <= 1 - 1e-5
  edges = np.linspace(0, 1, 11)
  cdf = lambda x: (np.expm1(4 * x) - np.expm1(4 * (1 - x)) + np.expm1(4)) / (2 * np.expm1(4))
  np.testing.assert_allclose(np.histogram(t, edges)[0] / len(t), np.diff(cdf(edges)), atol=2e-3)


@pytest.mark.parametrize('distribution', ['uniform', 'logit_normal', 'u_shaped'])
def test_flow_times_stay_in_their_interval(distribution):
  t = diffusion.sample_flow_time(jax.random.key(1), (10_000,), distribution, 0.1, 0.6)
  assert 0.1 <= float(t.min()) and float(t.max()) <= 0.6
  with pytest.raises(ValueError, match='objective.time_distribution'):
    diffusion.sample_flow_time(jax.random.key(1), (4,), 'beta', 0.0, 1.0)
