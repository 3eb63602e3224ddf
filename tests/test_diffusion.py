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


def test_karras_grid():
  s = diffusion.karras_sigmas(18)
  assert s.shape == (19,)
  np.testing.assert_allclose([s[0], s[-2], s[-1]], [80.0, 0.002, 0.0], rtol=1e-5)
  assert bool(jnp.all(jnp.diff(s) < 0))
  with pytest.raises(ValueError, match='num_steps'):
    diffusion.karras_sigmas(0)


def test_flow_and_vp_conversions_are_consistent():
  rng = jax.random.key(0)
  x0, eps = jax.random.normal(rng, (2, 4, 3))
  t = jnp.array([0.1, 0.3, 0.9, 0.99])
  x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
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
  # VP: z = sqrt(ab) x0 + sqrt(1 - ab) eps maps to x0 + sigma eps.
  ab = diffusion.sigma_to_vp_alpha_bar(sigma)
  z = jnp.sqrt(ab)[:, None] * x0 + jnp.sqrt(1 - ab)[:, None] * eps
  np.testing.assert_allclose(diffusion.vp_to_edm(z, ab), x0 + sigma[:, None] * eps, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(diffusion.edm_to_vp(diffusion.vp_to_edm(z, ab), sigma), z, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(diffusion.vp_alpha_bar_to_sigma(ab), sigma, rtol=1e-4)


def test_vp_grid_is_decreasing_and_ends_at_zero():
  s = diffusion.vp_sigmas(10)
  assert s[-1] == 0 and bool(jnp.all(jnp.diff(s) < 0))
  np.testing.assert_allclose(s[0], diffusion.vp_sigma(1.0), rtol=1e-6)
