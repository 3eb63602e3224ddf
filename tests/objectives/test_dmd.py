"""DMD / DMD2: the distribution-matching gradient vanishes when the fake score equals the teacher,
two time-scale updates leave a skipped generator exactly as it was, bad options are refused, and
short runs on the closed-form 2-D mixture reach the teacher's distribution in one step."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastgen import configs, diffusion, objectives, teachers
from fastgen import experiment as experiment_lib
from fastgen import step as step_lib
from fastgen import denoiser as denoiser_lib
from fastgen.networks import mlp
from fastgen.objectives import dmd
from tests.objectives import image_configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mlp_denoiser(hidden=32):
  return denoiser_lib.Denoiser(mlp.MLP(hidden=hidden, depth=1, emb_dim=16), 'edm', 1.0)


def _batch(num=64):
  x = jax.random.normal(jax.random.key(9), (num, 2))
  return {'x': x, 'noise': x, 'label': jnp.zeros((num,), jnp.int32)}


def _generator_grad_norm(objective):
  """``(params, teacher_params) -> |grad of the generator's loss|`` (one compile per objective)."""
  def loss(generator_params, params, teacher_params):
    return objective.loss('generator', {**params, 'generator': generator_params}, None,
                          teacher_params, _batch(), jax.random.key(3), 0)[0]
  grad = jax.jit(lambda params, teacher_params: optax.tree.norm(
      jax.grad(loss)(params['generator'], params, teacher_params)))
  return lambda params, teacher_params: float(grad(params, teacher_params))


def test_distribution_matching_gradient_vanishes_when_fake_score_equals_teacher():
  denoiser = _mlp_denoiser()
  teacher_params = jax.jit(denoiser.init)(jax.random.key(0), _batch()['x'])
  objective = dmd.DMD(denoiser, teacher=denoiser)
  params = jax.jit(objective.init)(jax.random.key(1), _batch(), teacher_params)  # f_fake = f_real
  # Zero, although the generator (the teacher's denoiser at sigma = 80) is far from the teacher's
  # distribution: the gradient is mu_fake - mu_real. A small change of mu_fake gives one.
  grad_norm = _generator_grad_norm(objective)
  assert grad_norm(params, teacher_params) < 1e-7
  rng = np.random.default_rng(2)
  perturbed = {**params, 'fake_score': jax.tree.map(
      lambda p: p + 0.05 * rng.standard_normal(p.shape).astype(np.float32), params['fake_score'])}
  assert grad_norm(perturbed, teacher_params) > 1e-4


def test_distribution_matching_loss_has_dmds_gradient():
  x_g, f_real, f_fake = jax.random.normal(jax.random.key(0), (3, 4, 5))
  grad = jax.grad(lambda x: jnp.sum(dmd.distribution_matching_loss(x, f_real, f_fake)))(x_g)
  weight = jnp.mean(jnp.abs(x_g - f_real), axis=1, keepdims=True)
  np.testing.assert_allclose(grad, (f_fake - f_real) / weight / 5, rtol=1e-5)


def test_f_divergence_weights_are_f_second_derivative_times_ratio_squared():
  # h(r) = f''(r) r^2 at r = exp(logit): reverse KL 1, forward KL r, JS r / (1 + r); mean 1.
  logits = jnp.array([[-1.0], [0.0], [2.0]])
  r = jnp.exp(logits[:, 0])
  for divergence, h in [('reverse_kl', jnp.ones(3)), ('forward_kl', r), ('js', r / (1 + r))]:
    np.testing.assert_allclose(dmd.f_divergence_weight(logits, divergence), h / jnp.mean(h),
                               rtol=1e-6)


def test_two_time_scale_updates_leave_a_skipped_generator_untouched():
  teacher, teacher_params = teachers.analytic_teacher('gmm2d')
  objective = dmd.DMD(_mlp_denoiser(), teacher, init_from_teacher=False,
                      fake_score_updates_per_generator_update=3)
  optimizer = optax.adam(1e-3)
  state = jax.jit(lambda key: step_lib.init_state(objective, optimizer, key, _batch(),
                                               teacher_params))(jax.random.key(0))
  step = jax.jit(step_lib.make_train_step(objective, optimizer, 0.9, False))
  for i in range(3):
    new, metrics = step(state, teacher_params, _batch(), jax.random.key(1))
    for part in ('params', 'opt_state', 'ema'):
      generator = zip(jax.tree.leaves(state[part]['generator']),
                      jax.tree.leaves(new[part]['generator']))
      assert all(np.array_equal(a, b) for a, b in generator) == (i < 2), (i, part)
      fake = zip(jax.tree.leaves(state[part]['fake_score']),
                 jax.tree.leaves(new[part]['fake_score']))
      assert not all(np.array_equal(a, b) for a, b in fake)
    assert float(metrics['generator/updated']) == (i == 2)
    state = new


def test_the_cpu_trainer_passes_the_schedule_so_a_skipped_generator_is_not_in_the_program():
  experiment = experiment_lib.Experiment(configs.get_config('dmd2_gmm2d'))
  assert experiment.objective.groups == ('fake_score', 'generator')
  patterns = [experiment.trains_at(s) for s in (0, 3, 4, 9)]
  assert patterns == [(True, False), (True, False), (True, True), (True, True)]
  # Host values for a host step: a device array would make the trainer wait for the step in
  # flight at every step.
  assert all(type(experiment.objective.trains(group, 3)) is bool
             for group in experiment.objective.groups)
  assert experiment_lib.Experiment(configs.get_config('sid_gmm2d')).trains_at(4) is None


@pytest.mark.parametrize('fake_score_sigma', ['karras_grid', 'lognormal'])
def test_fake_score_and_classifier_see_one_noise_distribution(monkeypatch, fake_score_sigma):
  # Official DMD2 (edm_guidance.py): compute_loss_fake and compute_cls_logits (real and fake each
  # its own t, in the classifier's loss and the generator's GAN term) draw t ~ U{0..999} of the
  # 1000-point Karras grid, the DM loss t ~ U{20..980}: here u ~ U[0, 1] and U[0.02, 0.98] on
  # the continuous grid. Recorded: the u range of every Karras-grid draw of each group's loss.
  ranges = []
  sample = diffusion.sample_karras_sigma
  monkeypatch.setattr(diffusion, 'sample_karras_sigma', lambda rng, shape, u_min, u_max, *a: (
      ranges.append((u_min, u_max)) or sample(rng, shape, u_min, u_max, *a)))
  teacher, teacher_params = teachers.analytic_teacher('gmm2d')
  objective = dmd.DMD(_mlp_denoiser(), teacher, init_from_teacher=False, gan_generator_weight=3e-3,
                      gan_discriminator_weight=1e-2, fake_score_sigma=fake_score_sigma)
  params = objective.init(jax.random.key(0), _batch(), teacher_params)
  draws = {}
  for group in objective.groups:
    ranges.clear()
    objective.loss(group, params, None, teacher_params, _batch(), jax.random.key(1), 0)
    draws[group] = sorted(ranges)
  official = fake_score_sigma == 'karras_grid'
  assert draws['fake_score'] == ([(0.0, 1.0)] * 2 if official else [])  # generated, real
  assert draws['generator'] == ([(0.0, 1.0)] if official else []) + [(0.02, 0.98)]  # GAN, DM


def test_dmd2_cifar_has_the_official_networks_dropout():
  assert configs.get_config('dmd2_cifar').network.dropout == 0.0  # DMD2 edm_network.py


@pytest.mark.parametrize('options, message', [
    (dict(regression_weight=0.25, student_steps=2), 'student_steps=1'),
    (dict(gan_generator_weight=1e-3), 'gan_discriminator_weight'),
    (dict(fake_score_updates_per_generator_update=0), 'must be >= 1'),
    (dict(regression_weight=0.25, sigma_init=2.5), 'sigma_max = 80'),
    (dict(divergence='js'), 'density ratio'),
    (dict(divergence='hellinger'), 'unknown objective.divergence'),
    (dict(fake_score_sigma='uniform'), 'unknown objective.fake_score_sigma'),
])
def test_bad_options_are_refused(options, message):
  with pytest.raises(ValueError, match=message):
    dmd.DMD(_mlp_denoiser(), None, **options)


def test_the_renamed_sigma_gen_is_refused_naming_sigma_init():
  config = configs.get_config('dmd_gmm2d')
  config.objective['sigma_gen'] = 80.0
  with pytest.raises(ValueError, match='objective.sigma_gen was renamed to objective.sigma_init'):
    objectives.make_objective(config, teachers.analytic_teacher('gmm2d')[0])


def test_regression_needs_the_coupling_data_set():
  teacher, teacher_params = teachers.analytic_teacher('gmm2d')
  objective = dmd.DMD(_mlp_denoiser(), teacher, init_from_teacher=False, regression_weight=0.25)
  params = jax.eval_shape(objective.init, jax.random.key(0), _batch(), teacher_params)
  batch = {k: v for k, v in _batch().items() if k != 'noise'}
  with pytest.raises(ValueError, match="data.name='couplings'"):
    jax.eval_shape(lambda p: objective.loss('generator', p, None, teacher_params, batch,
                                            jax.random.key(1), 0), params)


@pytest.mark.parametrize('config_name', ['dmd_gmm2d', 'dmd2_gmm2d'])
def test_gmm2d_configs_build(config_name):
  config = configs.get_config(config_name)
  teacher, teacher_params = teachers.load_teacher(config.teacher)
  objective = objectives.make_objective(config, teacher)
  params = jax.eval_shape(objective.init, jax.random.key(0), _batch(), teacher_params)
  assert set(params) == {'generator', 'fake_score'}
  assert ('head' in params['fake_score']) == (config_name == 'dmd2_gmm2d')


@pytest.mark.parametrize('config_name', ['dmd_digits', 'dmd2_cifar', 'sida_cifar'])
def test_image_configs_build_and_start_from_their_teacher(config_name):
  config = configs.get_config(config_name)
  objective, teacher_params, params = image_configs.abstract_init(config)
  assert jax.tree.structure(params['generator']) == jax.tree.structure(teacher_params)
  assert objective.adversarial == (config_name in ('dmd2_cifar', 'sida_cifar'))


# ---------------------------------------------------------------- ground truth on the 2-D mixture


def _distil(tmp_path, config, *overrides):
  """The final in-loop exact metrics (10k samples, 1 step; teacher: Heun 35 NFE) of
  the config named ``config`` with ``overrides``, trained through the CLI on one CPU device (the 8
  simulated devices of the test session make it several times slower)."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  cmd = [sys.executable, '-m', 'fastgen.main', f'--config={config}',
         f'--workdir={tmp_path}', '--config.train.sample_every=0', '--config.eval.steps=(1,)',
         *overrides]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / 'metrics.jsonl') as f:
    final = [json.loads(line) for line in f][-1]
  print({k: v for k, v in final.items() if k.startswith('eval/')})
  return final


# Bounds: SWD_1step < SWD_BOUND[config] x SWD_teacher, each at least 20% above the largest 1-step
# SWD measured over training seeds (config.seed; the evaluation's samples are fixed), with the
# fake score at the official Karras-grid noise levels. SWD of 10k samples has a floor of 0.020
# (exact samples against exact), so seed-to-seed spread, not the metric, sets the margin.
SWD_BOUND = {'dmd_gmm2d': 1.9, 'dmd2_gmm2d': 2.9}
# FD_1step < FD_teacher + FD_MARGIN[config], at least 20% above the largest measured FD.
FD_MARGIN = {'dmd_gmm2d': 0.002, 'dmd2_gmm2d': 0.0025}


@pytest.mark.parametrize('config, overrides', [
    # DMD: distribution matching + regression on 16k teacher-ODE pairs, 1000 steps at lr 3e-4.
    # Measured (seeds 0-2): FD 0.0015, 0.0015, 0.0014; SWD 0.051, 0.052, 0.053 (bound
    # 1.9 x 0.0337 = 0.064).
    ('dmd_gmm2d', ('--config.train.num_steps=1000', '--config.eval.every=1000',
                   '--config.optim.lr=3e-4')),
    # DMD2's losses (distribution matching + GAN, no regression) with the generator updated at
    # every step, 2000 steps at the config's lr 1e-4 (its two time-scale schedule is checked
    # exactly above, and with the full config in the slow test). Measured (seeds 0-3): FD 0.0006,
    # 0.0005, 0.0023, 0.0033 (bound 0.0017 + 0.0025 = 0.0042); SWD 0.061, 0.064, 0.074, 0.080
    # (bound 2.9 x 0.0337 = 0.098).
    # Slow (~2.5 min): the default suite keeps DMD's run, which shares the distribution-matching
    # machinery, and DMD2's GAN and two time-scale tests above.
    pytest.param('dmd2_gmm2d', ('--config.train.num_steps=2000', '--config.eval.every=2000',
                                '--config.objective.fake_score_updates_per_generator_update=1'),
                 marks=pytest.mark.slow),
])
def test_short_run_reaches_the_teacher_on_gmm2d(tmp_path, config, overrides):
  # Teacher Heun-35: FD 0.0017, SWD 0.034; 10k exact samples: FD 0.0004, SWD 0.020. The untrained
  # generator (all samples near 0): FD 1.6, SWD 0.9.
  final = _distil(tmp_path, config, '--config.train.ema_decay=0.995',
                  '--config.train.checkpoint_every=100000', *overrides)
  assert final['eval/fd_1step'] < final['eval/fd_teacher'] + FD_MARGIN[config]
  assert final['eval/swd_1step'] < SWD_BOUND[config] * final['eval/swd_teacher']


@pytest.mark.slow
@pytest.mark.parametrize('config', ['dmd_gmm2d', 'dmd2_gmm2d'])
def test_full_gmm2d_config_reaches_the_teacher(tmp_path, config):
  # The configs as shipped (DMD2 with 5 fake-score updates per generator update). Measured
  # (experiments/results/rules_gmm2d.json) with the former log-normal fake-score noise levels:
  # DMD FD 0.0014, SWD 0.040; DMD2 FD 0.0009, SWD 0.050; not re-measured since.
  final = _distil(tmp_path, config)
  assert final['eval/fd_1step'] < final['eval/fd_teacher'] + 0.001
  assert final['eval/swd_1step'] < 1.5 * final['eval/swd_teacher']
