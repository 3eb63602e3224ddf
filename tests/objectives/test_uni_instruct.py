"""Uni-Instruct: for each divergence the generator loss's gradient is the exact gradient of the
expanded f-divergence (closed form on a Gaussian, exact density ratio), it vanishes when the fake
score equals the teacher, and a short run on the 2-D mixture reaches the teacher in one step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastgen import configs, diffusion, objectives, teachers
from fastgen import denoiser as denoiser_lib
from fastgen.networks import mlp
from fastgen.objectives import uni_instruct
from tests.objectives import gmm2d_runs, image_configs


def _mlp_denoiser():
  return denoiser_lib.Denoiser(mlp.MLP(hidden=32, depth=1, emb_dim=16), 'edm', 1.0)


def _batch(num=64):
  x = jax.random.normal(jax.random.key(5), (num, 2))
  return {'x': x, 'label': jnp.zeros((num,), jnp.int32)}


def _generator_grad_norm(objective, params, teacher_params):
  def loss(generator_params):
    return objective.loss('generator', {**params, 'generator': generator_params}, None,
                          teacher_params, _batch(), jax.random.key(3), 0)[0]
  return float(optax.tree.norm(jax.grad(loss)(params['generator'])))


@pytest.mark.parametrize('divergence', uni_instruct.DIVERGENCES)
def test_generator_gradient_vanishes_when_fake_score_equals_teacher(divergence):
  denoiser = _mlp_denoiser()
  teacher_params = denoiser.init(jax.random.key(0), _batch()['x'])
  objective = uni_instruct.UniInstruct(denoiser, teacher=denoiser, divergence=divergence)
  params = objective.init(jax.random.key(1), _batch(), teacher_params)  # f_psi = f_phi
  # Both terms carry Delta = f_phi - f_psi, identically 0 here, whatever the ratio head says.
  assert _generator_grad_norm(objective, params, teacher_params) < 1e-6
  leaves, tree = jax.tree.flatten(params['fake_score']['denoiser'])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  moved = tree.unflatten([p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  perturbed = {**params, 'fake_score': {**params['fake_score'], 'denoiser': moved}}
  assert _generator_grad_norm(objective, perturbed, teacher_params) > 1e-3


def _log_normal_density(x, mean, var):
  return -0.5 * (x - mean) ** 2 / var - 0.5 * jnp.log(2 * jnp.pi * var)


def _gaussian_gradients(divergence, num=1_000_000, sigma=0.7):
  """p = N(0, 1), generator x_g = mu + s z, noise level sigma; exact denoisers (Tweedie) and the
  exact ratio r = q_sigma / p_sigma. Returns the gradient w.r.t. (mu, log s) of the expanded
  divergence int q_sigma h(r) ||f_phi - f_q||^2 dx (by quadrature on a fine grid: no sampling
  noise) and, by Monte Carlo, of the surrogate with f_psi = f_q and r frozen at theta (pathwise
  through x_t and x_g only)."""
  key_z, key_eps = jax.random.split(jax.random.key(0))
  z, eps = jax.random.normal(key_z, (num, 1)), jax.random.normal(key_eps, (num, 1))
  f_real = lambda x: x / (1 + sigma**2)

  def f_fake(x, theta):
    mu, log_s = theta
    s2 = jnp.exp(2 * log_s)
    return mu + s2 * (x - mu) / (s2 + sigma**2)

  def log_q(x, theta):
    mu, log_s = theta
    return _log_normal_density(x, mu, jnp.exp(2 * log_s) + sigma**2)

  ratio = lambda x, theta: jnp.exp(log_q(x, theta) - _log_normal_density(x, 0.0, 1 + sigma**2))

  def divergence_value(theta):
    x = jnp.linspace(-15.0, 15.0, 60_001)
    h, _ = uni_instruct.divergence_weights(ratio(x, theta), divergence)
    integrand = jnp.exp(log_q(x, theta)) * h * (f_real(x) - f_fake(x, theta)) ** 2
    return jnp.sum(integrand) * (x[1] - x[0])

  def surrogate(theta):
    mu, log_s = theta
    x_g = mu + jnp.exp(log_s) * z
    x_t = x_g + sigma * eps
    frozen = jax.lax.stop_gradient(theta)
    h, a = uni_instruct.divergence_weights(ratio(x_t, frozen)[:, 0], divergence)
    return jnp.mean(uni_instruct.expanded_f_surrogate(f_real(x_t), f_fake(x_t, frozen), x_g,
                                                      h, a))

  # q close enough to p that the forward-KL weight p / q has a finite variance under q.
  theta = jnp.array([0.5, np.log(0.9)])
  return jax.grad(divergence_value)(theta), jax.grad(surrogate)(theta)


@pytest.mark.parametrize('divergence', uni_instruct.DIVERGENCES)
def test_surrogate_gradient_is_the_exact_expanded_divergence_gradient(divergence):
  # Measured (1M samples, float32), exact vs surrogate: reverse KL (0.1081, -0.0549) vs
  # (0.1082, -0.0551); forward KL (0.1420, -0.1557) vs (0.1425, -0.1566); JS (0.0556, -0.0417)
  # vs (0.0557, -0.0419): Monte Carlo error < 0.6%; 3% allowed.
  exact, surrogate = _gaussian_gradients(divergence)
  np.testing.assert_allclose(surrogate, exact, rtol=0.03)


@pytest.mark.parametrize('fake_score_sigma', ['lognormal', 'karras_grid'])
def test_fake_score_learns_at_its_noise_levels_and_the_generator_queries_the_grid(
    monkeypatch, fake_score_sigma):
  # SiD's recipe (log-normal, the default) or DMD2's grid for the fake score and its ratio head
  # (generated and real samples each draw); the generator loss at u ~ U[u_min, u_max] on the grid.
  draws = []
  karras, lognormal = diffusion.sample_karras_sigma, diffusion.sample_lognormal_sigma
  monkeypatch.setattr(diffusion, 'sample_karras_sigma', lambda rng, shape, u_min, u_max, *a: (
      draws.append(('grid', u_min, u_max)) or karras(rng, shape, u_min, u_max, *a)))
  monkeypatch.setattr(diffusion, 'sample_lognormal_sigma', lambda rng, shape, p_mean, p_std: (
      draws.append(('lognormal', p_mean, p_std)) or lognormal(rng, shape, p_mean, p_std)))
  teacher, teacher_params = teachers.analytic_teacher('gmm2d')
  objective = uni_instruct.UniInstruct(_mlp_denoiser(), teacher, init_from_teacher=False,
                                       fake_score_sigma=fake_score_sigma, p_mean=-0.4, p_std=1.4)
  params = objective.init(jax.random.key(0), _batch(), teacher_params)
  seen = {}
  for group in objective.groups:
    draws.clear()
    objective.loss(group, params, None, teacher_params, _batch(), jax.random.key(1), 0)
    seen[group] = list(draws)
  fake = ('lognormal', -0.4, 1.4) if fake_score_sigma == 'lognormal' else ('grid', 0.0, 1.0)
  assert seen['fake_score'] == [fake, fake]
  assert seen['generator'] == [('grid', 0.0, 0.8)]


def test_bad_options_are_refused_naming_the_option():
  with pytest.raises(ValueError, match='objective.divergence'):
    uni_instruct.UniInstruct(_mlp_denoiser(), teacher=None, divergence='kl')
  with pytest.raises(ValueError, match='objective.discriminator_weight'):
    uni_instruct.UniInstruct(_mlp_denoiser(), teacher=None, discriminator_weight=0.0)
  with pytest.raises(ValueError, match='objective.fake_score_sigma'):
    uni_instruct.UniInstruct(_mlp_denoiser(), teacher=None, fake_score_sigma='uniform')


def test_gmm2d_config_builds_and_samples():
  config = configs.get_config('uni_instruct_gmm2d')
  teacher, teacher_params = teachers.load_teacher(config.teacher)
  objective = objectives.make_objective(config, teacher)
  assert objective.divergence == 'forward_kl' and not objective.init_from_teacher
  params = objective.init(jax.random.key(0), _batch(), teacher_params)
  assert set(params['fake_score']) == {'denoiser', 'head'}
  x = objective.sample(params, teacher_params, jax.random.key(1), None, (8, 2), 1)
  assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.parametrize('config_name, teacher_name', [
    ('uni_instruct_cifar', 'edm_cifar'), ('uni_instruct_imagenet64', 'edm_imagenet64')])
def test_image_configs_build_and_start_from_their_teacher(config_name, teacher_name):
  config = configs.get_config(config_name)
  assert config.network.to_dict() == configs.get_config(teacher_name).network.to_dict()
  objective, teacher_params, params = image_configs.abstract_init(config)
  assert objective.divergence == 'forward_kl' and objective.init_from_teacher
  assert jax.tree.structure(params['generator']) == jax.tree.structure(teacher_params)
  assert set(params['fake_score']) == {'denoiser', 'head'}


def test_imagenet64_config_takes_the_first_authors_script_settings():
  # github.com/a-little-hoof/Uni_Instruct run_uni_instruct.sh imagenet64-cond(-sid): --tmax 800
  # --init_sigma 2.5 --batch 8192 --lr 4e-6 --glr 4e-6 --fp16 1 --lsd 1 --dropout 0.1 --ema 2
  # --duration 300; fsim_train.py: Adam betas (0, 0.999), eps 1e-6 under fp16.
  config = configs.get_config('uni_instruct_imagenet64')
  assert config.data.batch_size == 8192 and config.network.dropout == 0.1
  assert config.objective.sigma_init == 2.5 and config.objective.u_max == 0.8
  assert config.objective.discriminator_weight == 1.0
  optim = config.optim
  assert (optim.lr, optim.b1, optim.b2, optim.eps) == (4e-6, 0.0, 0.999, 1e-6)
  assert config.train.ema_decay == 0.5 ** (8192 / 2e6)  # half-life 2 Mimg
  steps = config.train.num_steps  # the official loop stops at the first step past 300 Mimg
  assert (steps - 1) * 8192 < 3e8 <= steps * 8192
  cifar = configs.get_config('uni_instruct_cifar')  # cifar10-cond: --batch 256 --duration 300
  assert cifar.train.num_steps * 256 == 3e8 and cifar.optim.lr == 1e-5


@pytest.mark.slow
def test_short_uni_instruct_run_reaches_the_teacher_on_gmm2d(tmp_path):
  # uni_instruct_gmm2d (forward KL) shortened to 600 steps: 48 s at load average 2, 170-290 s
  # at 7-9 (the ratio head and the real-data batch cost more than SIM's step); slow, to keep the
  # new default-suite tests under 90 s. Measured one-step FD (20k samples), seeds 0-2, with the
  # fake score at SiD's log-normal noise levels: 0.0011, 0.0013, 0.0018 (at the grid levels, the
  # former default: 0.0011, 0.0013, 0.0006); the teacher's Heun-35 FD 0.0015. Bound 0.0023: 25%
  # above the largest measured.
  (fd,), _ = gmm2d_runs.train_and_measure(tmp_path, 'uni_instruct_gmm2d', 600, (1,))
  assert fd < 0.0023
