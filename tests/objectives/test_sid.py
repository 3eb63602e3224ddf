"""SiD: the generator's gradient vanishes when the fake score equals the teacher, and a short run
on the closed-form 2-D mixture reaches the teacher's distribution in one step.

Fréchet distances are computed here against the mixture's exact moments (fastgen.evaluation.exact
did not exist when this was written).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from fastgen import checkpoint, configs, diffusion, objectives, samplers, teachers
from fastgen import experiment as experiment_lib
from fastgen import denoiser as denoiser_lib
from fastgen.evaluation import exact as exact_metrics
from fastgen.networks import mlp
from tests.objectives import image_configs
from fastgen.objectives import sid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mlp_denoiser(hidden=32):
  return denoiser_lib.Denoiser(mlp.MLP(hidden=hidden, depth=1, emb_dim=16), 'edm', 1.0)


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
  objective = sid.SiD(denoiser, teacher=denoiser)
  params = objective.init(jax.random.key(1), _batch(), teacher_params)  # f_psi = f_phi
  # Zero up to float32 round-off (measured 8e-9), although generator != teacher: every term of
  # the loss has the factor f_phi - f_psi. A small change of f_psi gives a gradient (measured 2.2).
  assert _generator_grad_norm(objective, params, teacher_params) < 1e-6
  noise = lambda p, k: p + 0.05 * jax.random.normal(k, p.shape)
  leaves, tree = jax.tree.flatten(params['fake_score'])
  keys = jax.random.split(jax.random.key(2), len(leaves))
  perturbed = {**params, 'fake_score': tree.unflatten(map(noise, leaves, keys))}
  assert _generator_grad_norm(objective, perturbed, teacher_params) > 1e-3


def test_fake_score_learns_on_inference_mode_generator_samples_unless_told_otherwise(
    monkeypatch):
  # Official sid_training_loop.py: G in eval mode (dropout off) while the fake score trains on its
  # samples, in train mode for its own loss. The same parameters with dropout 0.5 and 0 must then
  # give the fake score identical samples, and the generator's own loss different values.
  with_dropout, without = (denoiser_lib.Denoiser(mlp.MLP(hidden=32, depth=1, emb_dim=16,
                                                         dropout=rate), 'edm', 1.0)
                           for rate in (0.5, 0.0))
  teacher_params = without.init(jax.random.key(0), _batch()['x'])
  objectives_ = [sid.SiD(d, teacher=without) for d in (with_dropout, without)]
  params = objectives_[1].init(jax.random.key(1), _batch(), teacher_params)
  for group in ('generator', 'fake_score'):  # away from the teacher, so dropout shows
    params[group] = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.key(4), p.shape), params[group])
  samples = []
  real_losses = sid.fake_score.fake_score_losses
  monkeypatch.setattr(sid.fake_score, 'fake_score_losses',
                      lambda d, p, x_g, *a, **k: (samples.append(x_g) or
                                                  real_losses(d, p, x_g, *a, **k)))
  loss = lambda objective, group: objective.loss(group, params, None, teacher_params, _batch(),
                                                 jax.random.key(3), 0)[0]
  for objective in objectives_:
    loss(objective, 'fake_score')
  np.testing.assert_array_equal(samples[0], samples[1])
  generator_losses = [float(loss(objective, 'generator')) for objective in objectives_]
  assert abs(generator_losses[0] - generator_losses[1]) > 1e-3 * abs(generator_losses[1])
  # The option: the fake score's samples in train mode, dropout on, as the generator's loss sees.
  loss(sid.SiD(with_dropout, teacher=without, fake_score_samples_in_train_mode=True),
       'fake_score')
  assert float(jnp.max(jnp.abs(samples[2] - samples[1]))) > 1e-3


def test_generator_loss_is_the_papers_fused_form():
  f_real, f_fake, x_g = jax.random.normal(jax.random.key(0), (3, 5, 4))
  alpha = 1.2
  weight = jnp.mean(jnp.abs(x_g - f_real), axis=1)
  diff = f_real - f_fake
  expected = ((1 - alpha) * jnp.sum(diff**2, 1) + jnp.sum(diff * (f_fake - x_g), 1)) / weight
  np.testing.assert_allclose(sid.generator_loss(f_real, f_fake, x_g, alpha), expected, rtol=1e-5)


def test_noise_levels_are_the_official_tmax_rule():
  # Official SiD: t ~ U[0, tmax / 1000], sigma = (s_max^(1/rho) + (1 - t)(s_min^(1/rho) -
  # s_max^(1/rho)))^rho; the defaults u_min = 0, u_max = 0.8 are tmax = 800, the same numbers.
  objective = sid.SiD(_mlp_denoiser(), teacher=None)
  key = jax.random.key(0)
  sigma = diffusion.sample_karras_sigma(key, (100_000,), objective.u_min, objective.u_max)
  t = jax.random.uniform(key, (100_000,)) * 800 / 1000
  official = (80 ** (1 / 7) + (1 - t) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  np.testing.assert_allclose(sigma, official, rtol=1e-5)
  cap = (80 ** (1 / 7) + 0.2 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # t = 0.8: sigma ~ 24.4
  assert float(sigma.min()) >= 0.002 and float(sigma.max()) <= cap * (1 + 1e-5)
  assert float(sigma.max()) > 0.95 * cap


def test_the_renamed_tmax_is_refused_with_its_conversion():
  config = configs.get_config('sid_gmm2d')
  config.objective['tmax'] = 800
  with pytest.raises(ValueError, match=r'objective.tmax was renamed to objective.u_max: use '
                                       r'objective.u_max = tmax / 1000'):
    objectives.make_objective(config, teachers.analytic_teacher('gmm2d')[0])


def test_init_from_teacher_refuses_a_teacher_of_another_architecture():
  analytic, analytic_params = teachers.analytic_teacher('gmm2d')
  with pytest.raises(ValueError, match='init_from_teacher'):
    sid.SiD(_mlp_denoiser(), teacher=analytic).init(jax.random.key(0), _batch(), analytic_params)
  other = _mlp_denoiser(hidden=16)
  with pytest.raises(ValueError, match='init_from_teacher'):
    sid.SiD(_mlp_denoiser(), teacher=other).init(
        jax.random.key(0), _batch(), other.init(jax.random.key(1), _batch()['x']))
  fresh = sid.SiD(_mlp_denoiser(), teacher=analytic, init_from_teacher=False).init(
      jax.random.key(0), _batch(), analytic_params)
  assert set(fresh) == {'generator', 'fake_score'}


@pytest.mark.parametrize('config_name, teacher_name', [
    ('sid_digits', 'edm_digits'), ('sid_cifar', 'edm_cifar'),
    ('sid_imagenet64', 'edm_imagenet64')])
def test_image_configs_build_and_start_from_their_teacher(config_name, teacher_name):
  config = configs.get_config(config_name)
  assert config.network.to_dict() == configs.get_config(teacher_name).network.to_dict()
  objective, teacher_params, params = image_configs.abstract_init(config)
  assert jax.tree.structure(params['generator']) == jax.tree.structure(teacher_params)


def test_imagenet64_config_takes_the_official_run_sid_sh_settings():
  # github.com/mingyuanzhou/SiD run_sid.sh imagenet64-cond: --alpha 1.2 --tmax 800
  # --init_sigma 2.5 --batch 8192 --lr 4e-6 --glr 4e-6 --fp16 1 --dropout 0.1 --ema 2
  # --duration 1000; sid_train.py: Adam betas (0, 0.999), eps 1e-6 under fp16.
  config = configs.get_config('sid_imagenet64')
  assert config.data.batch_size == 8192 and config.network.dropout == 0.1
  assert (config.objective.alpha, config.objective.sigma_init) == (1.2, 2.5)
  assert (config.objective.u_min, config.objective.u_max) == (0.0, 0.8)
  optim = config.optim
  assert (optim.lr, optim.b1, optim.b2, optim.eps) == (4e-6, 0.0, 0.999, 1e-6)
  assert (optim.warmup_steps, optim.grad_clip) == (0, 0.0)
  assert config.train.ema_decay == 0.5 ** (8192 / 2e6)  # half-life 2 Mimg
  steps = config.train.num_steps  # the official loop stops at the first step past 1000 Mimg
  assert (steps - 1) * 8192 < 1e9 <= steps * 8192


def test_cifar_config_takes_the_official_run_sid_sh_settings():
  # github.com/mingyuanzhou/SiD run_sid.sh cifar10-cond (since 70b3cbd): --alpha 1.2 --tmax 800
  # --init_sigma 2.5 --batch 256 --lr 1e-5 --glr 1e-5 --fp16 0 --dropout 0.13 --ema 0.5
  # --duration 800.
  config = configs.get_config('sid_cifar')
  assert config.data.batch_size == 256 and config.network.dropout == 0.13
  assert (config.objective.alpha, config.objective.sigma_init) == (1.2, 2.5)
  assert (config.objective.u_min, config.objective.u_max) == (0.0, 0.8)
  assert (config.optim.lr, config.optim.b1, config.optim.b2) == (1e-5, 0.0, 0.999)
  assert config.train.ema_decay == 0.5 ** (256 / 5e5)  # half-life 0.5 Mimg
  assert config.train.num_steps * 256 == 800e6


def test_gmm2d_config_builds():
  config = configs.get_config('sid_gmm2d')
  teacher, teacher_params = teachers.load_teacher(config.teacher)
  objective = objectives.make_objective(config, teacher)
  assert objective.groups == ('fake_score', 'generator') and not objective.init_from_teacher
  params = objective.init(jax.random.key(0), _batch(), teacher_params)
  x = objective.sample(params, teacher_params, jax.random.key(1), None, (8, 2), 1)
  assert x.shape == (8, 2) and bool(jnp.all(jnp.isfinite(x)))


# ---------------------------------------------------------------- ground truth on the 2-D mixture


def _frechet_to_moments(x, mean, cov):
  """Exact Fréchet distance between N(mean_x, cov_x) of samples and N(mean, cov)."""
  m, c = x.mean(0), np.cov(x, rowvar=False)
  return float(np.sum((m - mean) ** 2) + np.trace(c + cov - 2 * scipy.linalg.sqrtm(cov @ c).real))


def _sliced_wasserstein(a, b, num_projections=256):
  """Sliced 2-Wasserstein distance between two equal-size 2-D sample sets."""
  angles = np.linspace(0, np.pi, num_projections, endpoint=False)
  directions = np.stack([np.cos(angles), np.sin(angles)], 1)
  pa, pb = np.sort(a @ directions.T, 0), np.sort(b @ directions.T, 0)
  return float(np.sqrt(np.mean((pa - pb) ** 2)))


def _distill_and_compare(tmp_path, *overrides, num=20_000):
  """(FD, SWD) of the SiD 1-step generator trained by ``sid_gmm2d`` with ``overrides``
  and of the teacher's Heun 35-NFE samples. Training runs through the CLI (``train_and_evaluate``)
  on one CPU device: the 8 simulated devices of the test session make it 6x slower."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  cmd = [sys.executable, '-m', 'fastgen.main', '--config=sid_gmm2d',
         f'--workdir={tmp_path}', '--config.train.sample_every=0',
         '--config.eval.every=0', *overrides]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = configs.get_config('sid_gmm2d')
  experiment = experiment_lib.Experiment(config)
  teacher, teacher_params = experiment.teacher, experiment.teacher_params
  mean, cov = exact_metrics.mixture_moments(
      *exact_metrics.mixture_from_teacher(teacher_params))
  exact = np.asarray(teacher.sample(teacher_params, jax.random.key(5), num))
  heun = np.asarray(samplers.sample(teacher, teacher_params, jax.random.key(3), (num, 2),
                                    method='heun', num_steps=18))
  generator = checkpoint.load_params(str(tmp_path), ('ema', 'generator'))
  one_step = np.asarray(experiment.sample({'generator': generator}, jax.random.key(0), num, 1))
  sid_metrics = (_frechet_to_moments(one_step, mean, cov), _sliced_wasserstein(one_step, exact))
  teacher_metrics = (_frechet_to_moments(heun, mean, cov), _sliced_wasserstein(heun, exact))
  print(f'FD, SWD: SiD 1-step {sid_metrics}, teacher Heun-35 {teacher_metrics}')
  return sid_metrics, teacher_metrics


def test_short_sid_run_reaches_the_teacher_on_gmm2d(tmp_path):
  # 1000 steps (~25 s on a loaded 2-core CPU). Measured, seeds 0-3 (config.seed): SiD 1-step FD
  # 0.0009, 0.0009, 0.0016, 0.0018, SWD 0.046, 0.047, 0.045, 0.048; teacher Heun-35 FD 0.0015,
  # SWD 0.034; the untrained generator FD 0.82, SWD 0.66; 20k exact samples FD 0.0002 (the
  # sampling floor). Bounds: FD 0.0035 (94% above the largest), SWD 1.8 x 0.034 = 0.061 (25%
  # above the largest; 1.7x left 18%).
  (fd, swd), (teacher_fd, teacher_swd) = _distill_and_compare(
      tmp_path, '--config.optim.lr=3e-4', '--config.train.num_steps=1000',
      '--config.train.ema_decay=0.995', '--config.train.checkpoint_every=1000')
  assert fd < teacher_fd + 0.002 and swd < 1.8 * teacher_swd


@pytest.mark.slow
def test_full_sid_gmm2d_config_matches_or_beats_the_teacher_ode(tmp_path):
  # sid_gmm2d, 4000 steps (~70 s). Measured: SiD 1-step FD 0.0004, SWD 0.030; teacher
  # Heun-35 FD 0.0015, SWD 0.034 (the teacher's score is exact, its ODE solve is not).
  (fd, swd), (teacher_fd, teacher_swd) = _distill_and_compare(tmp_path)
  assert fd < teacher_fd and swd < 1.1 * teacher_swd
