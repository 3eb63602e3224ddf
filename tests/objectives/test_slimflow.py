"""SlimFlow: the annealing schedule runs from independent pairs to the teacher's coupling, both
stages' losses are minimal at the exact straight flow of a toy coupling, the stage switch freezes
the 2-flow (and survives a restart), and the image students are smaller than their teachers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import configs, objectives, teachers
from fastgen import denoiser as denoiser_lib
from fastgen.networks import count_params
from fastgen.objectives import slimflow
from tests.objectives import image_configs
from tests.objectives import rectified_flow_toys as toys


def _objective(**kwargs):
  kwargs = dict(reflow_steps=10, annealing='linear', annealing_steps=5, metric='l2',
                two_flow_steps=4, guidance_steps=2) | kwargs
  return slimflow.SlimFlow(toys.ScaledExactVelocity(), teacher=None, **kwargs)


def test_annealing_schedules_run_from_one_to_zero():
  for schedule in slimflow.ANNEALING:
    beta = [float(slimflow.annealing_beta(k, 100, schedule)) for k in (0, 50, 100, 400)]
    assert beta[0] == 1.0 and beta[0] > beta[1] > beta[2] >= beta[3] and beta[3] < 0.02
  np.testing.assert_allclose(slimflow.annealing_beta(100, 100, 'exp'), np.exp(-1.0), rtol=1e-6)
  z, eps = jax.random.normal(jax.random.key(0), (2, 200_000))
  np.testing.assert_allclose(jnp.std(slimflow.anneal_noise(z, eps, 0.6)), 1.0, atol=0.01)


def test_cifar_anneals_as_the_official_command():
  # SlimFlow README, Annealing Reflow: --config.training.x0_randomness warmup_300000 (linear,
  # reflow/reflow.py randomness_schedule) at batch 128, distilled from checkpoint_16 (800k
  # steps): at batch 512 the same samples are 75k and 200k steps.
  config = configs.get_config('slimflow_cifar')
  objective = config.objective
  assert config.data.batch_size * objective.annealing_steps == 128 * 300_000
  assert config.data.batch_size * objective.reflow_steps == 128 * 800_000
  beta = [float(slimflow.annealing_beta(k, objective.annealing_steps, objective.annealing))
          for k in (0, 37_500, 75_000, 150_000)]
  np.testing.assert_allclose(beta, [1.0, 0.5, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize('distill_pairs, distill_loss_is_zero', [
    ('couplings', False), ('two_flow', True)])
def test_distillation_pairs(distill_pairs, distill_loss_is_zero):
  # Official: the one step is regressed onto the stored pairs (here the batch's couplings); with
  # 'two_flow' onto the 2-flow's own Euler solve. Pairs the 2-flow does not reproduce tell them
  # apart; the flow guidance is zero for both.
  objective = _objective(distill_pairs=distill_pairs)
  batch = toys.coupling_batch()
  params = objective.init(jax.random.key(0), batch, None)  # student = two_flow = exact v*
  stage2 = {**params, 'stage': jnp.int32(1)}
  off_pairs = {**batch, 'x': 1.5 * batch['x']}
  _, metrics = objective.loss('student', stage2, None, None, off_pairs, jax.random.key(1), 10)
  assert float(metrics['guidance_loss']) < 1e-9
  assert (float(metrics['distill_loss']) < 1e-6) == distill_loss_is_zero


def test_both_stages_are_minimal_at_the_exact_straight_flow():
  objective = _objective()
  batch = toys.coupling_batch()
  params = objective.init(jax.random.key(0), batch, None)  # student = two_flow = exact v*
  # Stage 1 once beta = 0 (step >= annealing_steps) is reflow on the coupling: zero at v*.
  # At beta = 1 (step 0) the pairs are independent, and v* is no longer the optimum.
  assert toys.loss_and_grad(objective, params, batch, step=5)[0] < 1e-9
  assert toys.loss_and_grad(objective, params, batch, step=0)[0] > 0.1
  # Stage 2: one step lands on the 2-flow's endpoint, and the 2-flow from any point of the
  # student's straight path agrees.
  stage2 = {**params, 'stage': jnp.int32(1)}
  loss, grad = toys.loss_and_grad(objective, stage2, batch, step=10)
  for scale in (0.9, 1.1):
    perturbed_loss, perturbed_grad = toys.loss_and_grad(
        objective, toys.with_scale(stage2, scale), batch, step=10)
    assert loss < 1e-3 * perturbed_loss and abs(grad) < 1e-2 * abs(perturbed_grad)


def test_stage_switch_freezes_the_ema_two_flow():
  objective = _objective()
  params = objective.init(jax.random.key(0), toys.coupling_batch(), None)
  moved = toys.with_scale(params, 3.0)
  ema = {'student': {'scale': jnp.asarray(2.0)}}
  before = objective.set_frozen(moved, ema, jnp.int32(9))
  assert int(before['stage']) == 0 and float(before['two_flow']['scale']) == 1.0
  after = objective.set_frozen(moved, ema, jnp.int32(10))
  assert int(after['stage']) == 1 and float(after['two_flow']['scale']) == 2.0
  later = objective.set_frozen({**after, 'student': {'scale': jnp.asarray(5.0)}},
                            {'student': {'scale': jnp.asarray(4.0)}}, jnp.int32(11))
  assert float(later['two_flow']['scale']) == 2.0  # frozen after the switch


@pytest.mark.parametrize('option, value, message', [
    ('annealing', 'step', 'objective.annealing'),
    ('distill_pairs', 'online', 'objective.distill_pairs'),
    ('metric', 'lpips', 'objective.metric'),
    ('guidance_s_max', 1.5, 'guidance_s_min'),
])
def test_bad_options_give_one_clear_error(option, value, message):
  config = configs.get_config('slimflow_gmm2d')
  config.objective[option] = value
  with pytest.raises(ValueError, match=message):
    objectives.make_objective(config, teachers.analytic_teacher('gmm2d')[0])


@pytest.mark.parametrize('config_name, teacher_name', [
    ('slimflow_digits', 'edm_digits'), ('slimflow_cifar', 'edm_cifar')])
def test_image_students_are_smaller_than_their_teachers(config_name, teacher_name):
  objective, _, params = image_configs.abstract_init(configs.get_config(config_name))
  assert objective.reflow_steps < configs.get_config(config_name).train.num_steps
  teacher_config = configs.get_config(teacher_name)
  teacher = denoiser_lib.from_config(teacher_config.network)
  size = teacher_config.network.img_resolution
  teacher_params = jax.eval_shape(teacher.init, jax.random.key(0),
                                  jnp.zeros((1, size, size, teacher_config.network.in_channels)),
                                  jnp.zeros((1,), jnp.int32))
  assert count_params(params['student']) < 0.2 * count_params(teacher_params)
