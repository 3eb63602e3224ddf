"""Score Implicit Matching: the generator loss's gradient is the exact gradient of the
pseudo-Huber score divergence (closed form on a Gaussian), it vanishes when the fake score equals
the teacher, and a short run on the 2-D mixture reaches the teacher in one step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastgen import configs, objectives, teachers
from fastgen import denoiser as denoiser_lib
from fastgen.networks import mlp
from fastgen.objectives import sim
from tests.objectives import gmm2d_runs


def _mlp_denoiser():
  return denoiser_lib.Denoiser(mlp.MLP(hidden=32, depth=1, emb_dim=16), 'edm', 1.0)


def _batch(num=64):
  return {'x': jnp.zeros((num, 2)), 'label': jnp.zeros((num,), jnp.int32)}


def _generator_grad_norm(objective, params, teacher_params):
  def loss(generator_params):
    return objective.loss('generator', {**params, 'generator': generator_params}, None,
                          teacher_params, _batch(), jax.random.key(3), 0)[0]
  return float(optax.tree.norm(jax.grad(loss)(params['generator'])))


def test_generator_gradient_vanishes_when_fake_score_equals_teacher():
  denoiser = _mlp_denoiser()
  teacher_params = denoiser.init(jax.random.key(0), _batch()['x'])
  objective = sim.SIM(denoiser, teacher=denoiser)
  params = objective.init(jax.random.key(1), _batch(), teacher_params)  # f_psi = f_phi
  # Every term has the factor Delta = f_phi - f_psi (d(0) = 0, d'(0) = 0), identically 0 in x_t
  # here: exactly zero. A small change of f_psi gives a gradient (measured 0.5).
  assert _generator_grad_norm(objective, params, teacher_params) < 1e-6
  leaves, tree = jax.tree.flatten(params['fake_score'])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  perturbed = {**params, 'fake_score': tree.unflatten(
      [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])}
  assert _generator_grad_norm(objective, perturbed, teacher_params) > 1e-2


def test_pseudo_huber_is_quadratic_near_zero_and_linear_far_away():
  y = jnp.array([[3e-3, -4e-3], [300.0, 400.0]])  # norms 5e-3 and 500
  c = 0.5
  d = sim.pseudo_huber(y, c)
  np.testing.assert_allclose(d[0], 5e-3**2 / (2 * c), rtol=1e-3)  # ||y||^2 / (2c)
  np.testing.assert_allclose(d[1], 500.0 - c, rtol=1e-3)          # ||y|| - c


def _gaussian_gradients(num=1_000_000, sigma=0.7, c=0.3):
  """On p = N(0, 1), a generator x_g = mu + s z (q = N(mu, s^2)) and noise level sigma, both
  denoisers are exact (Tweedie): f_phi(x) = x / (1 + sigma^2), f_q(x) = mu + s^2 (x - mu) /
  (s^2 + sigma^2). Returns the gradient w.r.t. (mu, log s) of the divergence
  E_{x ~ q_sigma} d(f_phi - f_q) (pathwise through q's sample and through f_q), of the SIM
  surrogate with f_psi = f_q frozen, and of the surrogate without its d - d'^T Delta term."""
  key_z, key_eps = jax.random.split(jax.random.key(0))
  z, eps = jax.random.normal(key_z, (num, 1)), jax.random.normal(key_eps, (num, 1))
  f_real = lambda x: x / (1 + sigma**2)

  def f_fake(x, theta):
    mu, log_s = theta
    s2 = jnp.exp(2 * log_s)
    return mu + s2 * (x - mu) / (s2 + sigma**2)

  def divergence(theta):
    mu, log_s = theta
    x = mu + jnp.sqrt(jnp.exp(2 * log_s) + sigma**2) * eps
    return jnp.mean(sim.pseudo_huber(f_real(x) - f_fake(x, theta), c))

  def surrogate(theta, without_value_term=False):
    mu, log_s = theta
    x_g = mu + jnp.exp(log_s) * z
    x_t = x_g + sigma * eps
    fake = f_fake(x_t, jax.lax.stop_gradient(theta))
    loss = sim.score_divergence_surrogate(f_real(x_t), fake, x_g, c)
    if without_value_term:  # only d'(Delta)^T (f_phi - x_g)
      delta = f_real(x_t) - fake
      loss = loss - sim.pseudo_huber(delta, c) + jnp.sum(
          delta**2 / jnp.sqrt(jnp.sum(delta**2, 1, keepdims=True) + c**2), 1)
    return jnp.mean(loss)

  theta = jnp.array([0.8, np.log(0.6)])
  return (jax.grad(divergence)(theta), jax.grad(surrogate)(theta),
          jax.grad(lambda t: surrogate(t, True))(theta))


def test_surrogate_gradient_is_the_exact_divergence_gradient_on_a_gaussian():
  exact, surrogate, partial = _gaussian_gradients()
  # Measured (1M samples): exact (0.4329, -0.2893), surrogate (0.4320, -0.2904): Monte Carlo
  # error ~0.3%; 3% allowed. Without d(Delta) - d'(Delta)^T Delta: (0.365, -0.285), 16% off in mu.
  np.testing.assert_allclose(surrogate, exact, rtol=0.03)
  assert abs(float(partial[0] - exact[0])) > 0.1 * abs(float(exact[0]))


def test_bad_huber_c_is_refused_naming_the_option():
  with pytest.raises(ValueError, match='objective.huber_c'):
    sim.SIM(_mlp_denoiser(), teacher=None, huber_c=0.0)


def test_gmm2d_config_builds_and_samples():
  config = configs.get_config('sim_gmm2d')
  teacher, teacher_params = teachers.load_teacher(config.teacher)
  objective = objectives.make_objective(config, teacher)
  assert isinstance(objective, sim.SIM) and not objective.init_from_teacher
  params = objective.init(jax.random.key(0), _batch(), teacher_params)
  x = objective.sample(params, teacher_params, jax.random.key(1), None, (8, 2), 1)
  assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.slow  # the default suite keeps SiD's run (the same one-step generator and fake
# score) and SIM's exact-gradient tests above
def test_short_sim_run_reaches_the_teacher_on_gmm2d(tmp_path):
  # sim_gmm2d shortened to 600 steps (~35 s unloaded; 110-170 s at load average 7). Measured
  # one-step FD (20k samples), seeds 0-3: 0.0020, 0.0009, 0.0007, 0.0015; the teacher's Heun-35
  # FD 0.0015, the untrained generator's ~0.8. Bound 0.0025: 24% above the largest measured.
  (fd,), _ = gmm2d_runs.train_and_measure(tmp_path, 'sim_gmm2d', 600, (1,))
  assert fd < 0.0025
