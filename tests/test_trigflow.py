"""TrigFlow <-> EDM conversions are exact inverses, the velocity any denoiser yields through them
is the probability-flow ODE's (checked on a Gaussian, where the ODE is solved in closed form),
and an EDM network is a TrigFlow network with the same weights."""

import jax
import jax.numpy as jnp
import numpy as np

from fastgen import denoiser as denoiser_lib
from fastgen import trigflow
from fastgen.networks import mlp
from fastgen.teachers import analytic

SIGMA_DATA = 0.5
MEAN, VAR = np.array([0.3, -0.6]), np.array([0.2, 0.45])


def test_conversions_round_trip():
  sigma = jnp.array([1e-3, 0.02, 0.5, 3.0, 80.0])
  t = trigflow.time_of(sigma, SIGMA_DATA)
  np.testing.assert_allclose(trigflow.sigma_of(t, SIGMA_DATA), sigma, rtol=1e-5)
  np.testing.assert_allclose(trigflow.t_max(80.0, 0.5), 1.56454, atol=1e-5)
  x = jax.random.normal(jax.random.key(0), (5, 3))
  x_t = trigflow.from_edm(x, sigma, SIGMA_DATA)
  np.testing.assert_allclose(x_t, jnp.cos(t)[:, None] * x, rtol=1e-5)
  np.testing.assert_allclose(trigflow.to_edm(x_t, t), x, rtol=1e-5)
  v = jax.random.normal(jax.random.key(1), x.shape)
  x0 = trigflow.x0_from_velocity(x_t, t, v)
  np.testing.assert_allclose(trigflow.velocity_from_x0(x_t, t, x0), v, rtol=2e-4, atol=2e-4)
  # x_t / cos(t) = x0 + sigma_d tan(t) eps: the EDM sample at sigma = sigma_d tan(t).
  x0, eps = jax.random.normal(jax.random.key(2), (2, 5, 3))
  x_t = trigflow.noisy(x0, SIGMA_DATA * eps, t)
  np.testing.assert_allclose(trigflow.to_edm(x_t, t), x0 + sigma[:, None] * eps, rtol=1e-4,
                             atol=1e-4)


def _trajectory(x_edm_start, sigma_start, t):
  """The exact PF-ODE trajectory for x0 ~ N(m, diag(v)), in TrigFlow coordinates:
  x_edm(sigma) = m + sqrt((v + sigma^2) / (v + sigma_0^2)) (x_edm(sigma_0) - m), x_t = cos t x_edm."""
  sigma = trigflow.sigma_of(t, SIGMA_DATA)
  ratio = jnp.sqrt((VAR + sigma[:, None] ** 2) / (VAR + sigma_start[:, None] ** 2))
  return jnp.cos(t)[:, None] * (MEAN + ratio * (x_edm_start - MEAN))


def test_teacher_velocity_is_the_probability_flow_ode():
  teacher = analytic.GaussianMixtureTeacher((2,), sigma_data=SIGMA_DATA)
  params = analytic.mixture_params([1.0], MEAN[None], np.diag(VAR)[None])
  t = jnp.array([0.05, 0.4, 0.8, 1.2, 1.5])
  x_edm = jax.random.normal(jax.random.key(0), (5, 2)) * 2.0
  sigma = trigflow.sigma_of(t, SIGMA_DATA)
  x_t, exact = jax.jvp(lambda t: _trajectory(x_edm, sigma, t), (t,), (jnp.ones_like(t),))
  denoise = lambda x, s: teacher(params, x, s)
  velocity = trigflow.teacher_velocity(denoise, x_t, t, SIGMA_DATA)
  # Measured max error 2e-6 (float32).
  np.testing.assert_allclose(velocity, exact, rtol=1e-4, atol=1e-5)


def test_an_edm_network_is_a_trigflow_network():
  net = mlp.MLP(hidden=32, depth=2, emb_dim=16)
  edm = denoiser_lib.Denoiser(net, 'edm', SIGMA_DATA)
  trig = trigflow.TrigFlowNetwork(net, SIGMA_DATA, 'log_sigma')
  x_t = jax.random.normal(jax.random.key(0), (6, 2))
  params = jax.tree.map(lambda p: p + 0.2, edm.init(jax.random.key(1), x_t))
  t = jnp.linspace(0.1, 1.5, 6)
  velocity = trigflow.teacher_velocity(lambda x, s: edm(params, x, s), x_t, t, SIGMA_DATA)
  np.testing.assert_allclose(SIGMA_DATA * trig(params, x_t, t), velocity, rtol=1e-4, atol=1e-4)
  # The consistency function is the teacher's one-step DDIM jump to t = 0 (its x0 estimate).
  np.testing.assert_allclose(trig.consistency(params, x_t, t),
                             edm(params, trigflow.to_edm(x_t, t), trigflow.sigma_of(t, SIGMA_DATA)),
                             rtol=1e-4, atol=1e-4)


def test_consistency_boundary_condition_holds_exactly():
  trig = trigflow.TrigFlowNetwork(mlp.MLP(hidden=32, depth=1, emb_dim=16), 1.0, 'trig')
  x = jax.random.normal(jax.random.key(0), (8, 2))
  params = jax.tree.map(lambda p: p + 0.3, trig.init(jax.random.key(1), x))
  np.testing.assert_array_equal(trig.consistency(params, x, 0.0), x)
  assert float(jnp.max(jnp.abs(trig.consistency(params, x, 0.5) - x))) > 1e-2
