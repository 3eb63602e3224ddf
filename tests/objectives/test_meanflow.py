"""MeanFlow (Geng et al. 2025): for Gaussian data the average velocity is known in closed form,
and the JVP-based target built from the exact instantaneous velocity equals it (the MeanFlow
identity, Eq. 6); with the conditional velocity e - x the target is unbiased; the (r, t) sampler
and the one-step sampler are the paper's; a short run on the 2-D mixture learns it. With
classifier-free guidance (§4.2, Appendix) the loss on a network linear in (z, t, t - r) equals its
closed form, v_tilde acts only inside the guidance interval, dropped labels keep v, bad options
are refused."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import configs, objectives
from fastgen import denoiser as denoiser_lib
from fastgen.objectives import base, meanflow
from tests.objectives import gmm2d_runs

MEAN, STD = np.array([0.8, -0.5]), np.array([0.3, 1.4])


def _scale(t):
  """Std of z_t = (1 - t) x + t e per dimension: sqrt((1 - t)^2 s^2 + t^2)."""
  return jnp.sqrt((1 - t[:, None]) ** 2 * STD**2 + t[:, None] ** 2)


def _exact_u(z, r, t):
  """u*(z, r, t) = (z - z_r) / (t - r), z_r the exact ODE map from t to r for x ~ N(m, diag(s^2)):
  z_r = (1 - r) m + (std_r / std_t) (z - (1 - t) m); at r = t the instantaneous velocity."""
  def z_at(r):
    return (1 - r[:, None]) * MEAN + _scale(r) / _scale(t) * (z - (1 - t[:, None]) * MEAN)
  gap = (t - r)[:, None]
  velocity = jax.jvp(z_at, (t,), (jnp.ones_like(t),))[1]
  return jnp.where(gap > 0, (z - z_at(r)) / jnp.where(gap > 0, gap, 1.0), velocity)


def _draw(num, seed=0):
  key_x, key_e, key_t = jax.random.split(jax.random.key(seed), 3)
  x = MEAN + STD * jax.random.normal(key_x, (num, 2))
  e = jax.random.normal(key_e, (num, 2))
  r, t = meanflow.sample_times(key_t, (num,), -0.4, 1.0, 0.5)
  z = (1 - t[:, None]) * x + t[:, None] * e
  return x, e, r, t, z


def test_target_equals_the_true_average_velocity():
  x, e, r, t, z = _draw(4096)
  velocity = _exact_u(z, t, t)  # the marginal (PF-ODE) velocity
  u, target = meanflow.meanflow_target(_exact_u, z, r, t, velocity)
  np.testing.assert_allclose(u, _exact_u(z, r, t), rtol=1e-6)
  # Measured max error 4e-6 (float32); the students' errors are ~1e-2.
  np.testing.assert_allclose(target, u, rtol=1e-4, atol=2e-5)


def test_target_from_the_conditional_velocity_is_unbiased():
  num = 200_000
  x, e, r, t, z = _draw(num, seed=1)
  _, target = meanflow.meanflow_target(_exact_u, z, r, t, e - x)
  error = target - _exact_u(z, r, t)
  test_fn = jnp.tanh(z) * (1 + t[:, None])  # any function of (z, r, t)
  products = jnp.sum(error * test_fn, axis=1)
  mean, stderr = float(jnp.mean(products)), float(jnp.std(products)) / np.sqrt(num)
  assert abs(mean) < 4 * stderr and float(jnp.mean(jnp.abs(products))) > 100 * stderr


def test_time_sampler_and_weighting():
  r, t = meanflow.sample_times(jax.random.key(0), (100_000,), -0.4, 1.0, 0.25)
  assert bool(jnp.all(r <= t)) and bool(jnp.all((t > 0) & (t < 1)))
  assert abs(float(jnp.mean(r < t)) - 0.25) < 0.01
  u, target = jnp.ones((3, 2)), jnp.array([[1.0, 1.0], [0.0, 1.0], [-1.0, 1.0]])
  loss, squared = meanflow.adaptive_loss(u, target, 1.0, 1e-3)
  np.testing.assert_allclose(squared, [0.0, 1.0, 4.0])
  np.testing.assert_allclose(loss, [0.0, 1.0 / 1.001, 4.0 / 4.001], rtol=1e-6)
  grad = jax.grad(lambda u: jnp.sum(meanflow.adaptive_loss(u, target, 1.0, 1e-3)[0]))(u)
  np.testing.assert_allclose(grad[2], [2 * 2 / 4.001, 0.0], rtol=1e-5)  # the weight is sg'd


def test_one_step_sampler():
  objective = objectives.make_objective(configs.get_config('meanflow_gmm2d'))
  batch = {'x': jnp.zeros((4, 2)), 'label': jnp.zeros((4,), jnp.int32)}
  params = jax.tree.map(lambda p: p + 0.1, objective.init(jax.random.key(0), batch, None))
  rng = jax.random.key(1)
  z1 = jax.random.normal(rng, (4, 2))
  expected = z1 - objective.student(params['student'], z1, 0.0, 1.0)
  np.testing.assert_allclose(objective.sample(params, None, rng, None, (4, 2), 1), expected,
                             rtol=1e-5, atol=1e-6)


def test_short_run_learns_the_mixture_in_one_step(tmp_path):
  # configs/meanflow_gmm2d.py shortened to 2000 steps. Measured, seeds 0-3 (config.seed): 1-step
  # FD 0.0092, 0.0063, 0.0328, 0.0258; 2-step 0.011, 0.014, 0.029, 0.031 (teacher Heun-35
  # 0.0015, floor 0.0004; an untrained u = 0 gives FD ~2). Bounds 0.04 and 0.04: 22% and 29%
  # above the largest values (the former 1-step bound, 0.03, failed at seed 2). MeanFlow is not
  # at the teacher's level here: with the network's times scaled by 1000 (fastgen's flow
  # networks) it stalled at 0.05-0.07, with uniform (r, t) or p = 0 it was worse (0.06-0.5).
  fds, teacher_fd = gmm2d_runs.train_and_measure(tmp_path, 'meanflow_gmm2d', 2000, (1, 2))
  assert fds[0] < 0.04 and fds[1] < 0.04


class _LinearU(nn.Module):
  """u(z, r, t | c) = a_c z + b_c s t + d_c s (t - r) for the network input (z, (s t, s (t - r)),
  c), one (a, b, d) per label (the null label K included): d u / dt along (v, 0, 1) is
  a_c v + s (b_c + d_c), so the MeanFlow target is known in closed form."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x, times, labels, train=False):
    coef = self.param('coef', lambda key: jax.random.normal(key, (3, self.num_classes + 1)))
    a, b, d = (c[labels][:, None] for c in coef)
    return a * x + b * times[:, :1] + d * times[:, 1:]


def _linear_objective(**options):
  return meanflow.MeanFlow(denoiser_lib.Denoiser(_LinearU(), 'flow'), weight_power=0.0,
                           time_scale=0.5, **options)


def _closed_form_loss(objective, params, batch, rng):
  """The loss recomputed from its draws with the analytic u of :class:`_LinearU`."""
  a, b, d = params['student']['coef']
  key_t, key_e, _ = jax.random.split(rng, 3)
  x, s, null = batch['x'], objective.time_scale, objective.denoiser.num_classes
  r, t = meanflow.sample_times(key_t, x.shape[:1], objective.time_mu, objective.time_sigma,
                               objective.ratio_r_neq_t)
  e = jax.random.normal(key_e, x.shape)
  z = (1 - t[:, None]) * x + t[:, None] * e
  labels = base.drop_labels(jax.random.fold_in(rng, 3), batch['label'], null,
                            objective.label_dropout)
  u_at = lambda c, gap: a[c][:, None] * z + s * (b[c] * t + d[c] * gap)[:, None]
  inside = (t >= objective.guidance_t_min) & (t <= objective.guidance_t_max)
  omega = jnp.where(inside, objective.guidance_scale, 1.0)[:, None]
  kappa = jnp.where(inside, objective.guidance_mix, 0.0)[:, None]
  v_tilde = (omega * (e - x) + kappa * u_at(batch['label'], 0.0) +
             (1 - omega - kappa) * u_at(jnp.full_like(labels, null), 0.0))
  v_tilde = jnp.where((labels == null)[:, None], e - x, v_tilde)
  target = v_tilde - (t - r)[:, None] * (a[labels][:, None] * v_tilde +
                                          s * (b[labels] + d[labels])[:, None])
  return jnp.mean(jnp.sum((u_at(labels, t - r) - target) ** 2, axis=1))


def _linear_batch(num=512):
  key_x, key_p, key_l = jax.random.split(jax.random.key(3), 3)
  batch = {'x': jax.random.normal(key_x, (num, 2)),
           'label': jax.random.randint(key_l, (num,), 0, 3)}
  return batch, key_p


@pytest.mark.parametrize('options', [
    {},  # today's loss: omega = 1, kappa = 0, no dropout
    dict(guidance_scale=1.0, guidance_mix=0.5, label_dropout=0.1),  # official B/4
    dict(guidance_scale=0.2, guidance_mix=0.92, guidance_t_max=0.75, label_dropout=0.1),  # XL
    dict(guidance_scale=3.0, label_dropout=0.3),  # §4.2 without kappa
])
def test_guided_loss_equals_the_closed_form(options):
  objective = _linear_objective(**options)
  batch, key_p = _linear_batch()
  params = objective.init(key_p, batch, None)
  rng = jax.random.key(11)
  loss, _ = objective.loss('student', params, None, None, batch, rng, 0)
  np.testing.assert_allclose(loss, _closed_form_loss(objective, params, batch, rng), rtol=1e-5)


def test_guidance_changes_the_target_only_inside_its_interval():
  batch, key_p = _linear_batch()
  params = _linear_objective().init(key_p, batch, None)
  z, v = jax.random.normal(jax.random.key(1), (2, 512, 2))
  t = jnp.linspace(0.0, 1.0, 512)
  outside = _linear_objective(guidance_scale=2.0, guidance_t_min=0.3, guidance_t_max=0.6,
                              label_dropout=0.1)
  labels, v_tilde = outside._guided_target_velocity(params['student'], z, t, v, batch['label'],
                                                   jax.random.key(2))
  kept = (labels != 3) & ((t < 0.3) | (t > 0.6))
  np.testing.assert_array_equal(v_tilde[kept], v[kept])
  changed = (labels != 3) & (t >= 0.3) & (t <= 0.6)
  assert bool(jnp.all(jnp.any(v_tilde[changed] != v[changed], axis=1)))


def test_label_dropout_fraction_and_null_examples_keep_v():
  objective = _linear_objective(guidance_scale=2.0, guidance_mix=0.5, label_dropout=0.1)
  batch, key_p = _linear_batch(num=100_000)
  params = objective.init(key_p, batch, None)
  z = jax.random.normal(jax.random.key(1), batch['x'].shape)
  t = jax.random.uniform(jax.random.key(4), batch['x'].shape[:1])
  labels, v_tilde = objective._guided_target_velocity(params['student'], z, t, batch['x'],
                                                     batch['label'], jax.random.key(2))
  dropped = labels == 3
  # Binomial(1e5, 0.1): std 9.5e-4.
  assert abs(float(jnp.mean(dropped)) - 0.1) < 0.004
  np.testing.assert_array_equal(labels[~dropped], batch['label'][~dropped])
  np.testing.assert_array_equal(v_tilde[dropped], batch['x'][dropped])


@pytest.mark.parametrize('options, message', [
    (dict(guidance_scale=2.0, label_dropout=0.1, num_classes=0), 'class-conditional'),
    (dict(label_dropout=0.1, num_classes=0), 'class-conditional'),
    (dict(guidance_scale=2.0), 'label_dropout > 0'),
    (dict(guidance_mix=1.0, label_dropout=0.1), 'kappa < 1'),
    (dict(guidance_scale=0.0, label_dropout=0.1), 'omega > 0'),
    (dict(label_dropout=1.0), '0 <= p < 1'),
    (dict(guidance_t_min=0.8, guidance_t_max=0.5), 't_min <= t_max'),
])
def test_bad_guidance_options_are_refused(options, message):
  num_classes = options.pop('num_classes', 3)
  with pytest.raises(ValueError, match=message):
    meanflow.MeanFlow(denoiser_lib.Denoiser(_LinearU(num_classes), 'flow'), **options)
