"""Reflow: the loss is minimal (zero, flat) at the exact straight-line velocity of a toy coupling;
the metrics are the papers'; bad options fail clearly; and one round on
the 2-D mixture's exact ODE couplings makes the flow straighter and its one-step samples far closer
to the truth than one Euler step of the teacher."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import configs, diffusion, evaluate, objectives, samplers, teachers, train
from fastgen import experiment as experiment_lib
from fastgen import step as step_lib
from fastgen.objectives import reflow
from tests.objectives import rectified_flow_toys as toys


@pytest.mark.parametrize('metric, time_distribution', [
    ('l2', 'uniform'), ('pseudo_huber', 'u_shaped'), ('pseudo_huber', 'logit_normal')])
def test_loss_is_minimal_at_the_straight_line_velocity(metric, time_distribution):
  objective = reflow.Reflow(toys.ScaledExactVelocity(), teacher=None, metric=metric,
                            time_distribution=time_distribution, init_from_teacher=False)
  batch = toys.coupling_batch()
  params = objective.init(jax.random.key(0), batch, None)
  loss, grad = toys.loss_and_grad(objective, params, batch)
  for scale in (0.9, 1.1):
    perturbed_loss, perturbed_grad = toys.loss_and_grad(
        objective, toys.with_scale(params, scale), batch)
    assert loss < 1e-9 < 1e-4 < perturbed_loss
    assert abs(grad) < 1e-3 * abs(perturbed_grad)  # float32 round-off only


def test_t_max_bounds_the_training_times_and_starts_the_sampler():
  # With t_max = 0.5 the training times stay in [1e-5, 0.5] (a velocity that is wrong only above
  # t = 0.5 has loss zero), and one sampling step is T z - T v(T z, T) at T = 0.5.
  wrong_late = lambda x_t, t: toys.exact_velocity(x_t, t) * (1.0 + 2.0 * diffusion.expand_like(
      t > 0.5, x_t))
  @dataclasses.dataclass(frozen=True)
  class WrongLate(toys.ScaledExactVelocity):
    def velocity(self, params, x_t, t, labels=None, *, train=False, rng=None):
      return params['scale'] * wrong_late(x_t, t)
  batch = toys.coupling_batch()
  losses = {}
  for t_max in (reflow.T_MAX, 0.5):
    objective = reflow.Reflow(WrongLate(), teacher=None, metric='l2', time_distribution='uniform',
                              init_from_teacher=False, t_max=t_max)
    params = objective.init(jax.random.key(0), batch, None)
    losses[t_max] = float(toys.loss_and_grad(objective, params, batch)[0])
  assert losses[0.5] < 1e-9 < 1e-2 < losses[reflow.T_MAX]
  z = jax.random.normal(jax.random.key(2), (8, 2))
  sample = objective.sample(params, None, jax.random.key(2), None, (8, 2), 1)
  np.testing.assert_allclose(sample, 0.5 * z - 0.5 * wrong_late(0.5 * z, jnp.full((8,), 0.5)),
                             rtol=1e-6)
  with pytest.raises(ValueError, match='objective.t_max=1.0'):
    reflow.Reflow(WrongLate(), teacher=None, t_max=1.0)


def test_pseudo_huber_metric():
  a, b = jnp.zeros((2, 4)), jnp.array([[0.0, 0, 0, 0], [3.0, 4, 0, 0]])
  c = 0.00054 * 4
  np.testing.assert_allclose(reflow.distance(a, b, 'pseudo_huber'),
                             [0.0, (np.sqrt(25 + c**2) - c) / 4], rtol=1e-6)
  np.testing.assert_allclose(reflow.distance(a, b, 'l2'), [0.0, 25 / 4], rtol=1e-6)


@pytest.mark.parametrize('option, value, message', [
    ('metric', 'lpips_alex', 'objective.metric'),
    ('metric', 'lpips_huber', 'objective.lpips_weights'),
    ('premetric', 'l2', 'objective.premetric was renamed to objective.metric'),
    ('time_distribution', 'beta', 'objective.time_distribution'),
    ('couplings', 'cached', 'objective.couplings'),
    ('lpips_divide_by_t', True, 'objective.lpips_divide_by_t'),
    ('lpips_pooling', 'min', 'objective.lpips_pooling'),
])
def test_bad_options_give_one_clear_error(option, value, message):
  config = configs.get_config('reflow_gmm2d')
  config.objective[option] = value
  with pytest.raises(ValueError, match=message):
    objectives.make_objective(config, teachers.analytic_teacher('gmm2d')[0])


def test_cifar_config_is_the_official_command():
  # rfpp README, "Train CIFAR-10 using Config F": --learning_rate 2e-4 --warmup_steps 5000
  # --batchsize 512 --ema_decay 0.9999 --a 4 --loss_type lpips-huber --lpips_divt (LPIPS of
  # piq, LPIPS(replace_pooling=True)); configs_unet/cifar10_ve_aug.json: dropout 0.13.
  config = configs.get_config('reflow_cifar')
  assert (config.optim.lr, config.optim.warmup_steps) == (2e-4, 5000)
  assert (config.data.batch_size, config.train.ema_decay) == (512, 0.9999)
  assert (config.objective.u_shape_a, config.network.dropout) == (4.0, 0.13)
  assert (config.objective.metric, config.objective.lpips_divide_by_t,
          config.objective.lpips_pooling) == ('lpips_huber', True, 'average')


def test_dataset_couplings_need_the_couplings_data_set():
  objective = reflow.Reflow(toys.ScaledExactVelocity(), teacher=None, init_from_teacher=False)
  batch = toys.coupling_batch()
  del batch['noise']
  with pytest.raises(ValueError, match='data.name="couplings"'):
    objective.loss('student', {'student': {'scale': jnp.ones(())}}, None, None, batch,
                   jax.random.key(0), 0)


def _short_config(tmp_path):
  config = configs.get_config('reflow_gmm2d')
  config.data.update(batch_size=256, num_pairs=4096, shard_size=4096, ode_steps=32,
                     directory=str(tmp_path / 'couplings'))
  config.network.update(hidden=64, depth=2)
  config.train.update(num_steps=300, log_every=100, checkpoint_every=300, sample_every=0,
                      ema_decay=0.98)
  config.eval.update(every=0, num_samples=4000, batch_size=4000, steps=(1,), teacher_steps=0,
                     straightness_steps=32, straightness_samples=2000)
  return config


@pytest.mark.usefixtures('one_device')
def test_one_reflow_round_straightens_the_flow_and_beats_one_teacher_euler_step(tmp_path):
  # 300 steps on 4096 pairs of the exact teacher's Heun-32 ODE. Measured (4000 samples, exact
  # FD floor 0.0007): reflow 1-step FD 0.0004, teacher 1-step Euler 1.95; straightness of the
  # reflow ODE 0.0005, of the teacher's 0.48.
  config = _short_config(tmp_path)
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  experiment = experiment_lib.Experiment(config, str(tmp_path / 'run'))
  run_evaluator = evaluate.RunEvaluator(experiment)
  results = run_evaluator.evaluate(step_lib.sampling_params(state))
  teacher, teacher_params = experiment.teacher, experiment.teacher_params
  noise = jax.random.normal(jax.random.key(5), (4000, 2))
  teacher_one_step = samplers.flow_euler(lambda x, t: teacher.velocity(teacher_params, x, t),
                                         noise, 1, reflow.T_MAX)
  fd_teacher = run_evaluator.evaluator.metrics(teacher_one_step)['fd']
  print(f'1-step FD: reflow {results["eval/fd_1step"]:.4f}, teacher Euler {fd_teacher:.4f} '
        f'(floor {results["eval/fd_floor"]:.4f}); straightness: reflow '
        f'{results["eval/straightness"]:.5f}, teacher {results["eval/straightness_teacher"]:.4f}')
  assert results['eval/fd_1step'] < 0.01 * fd_teacher
  assert results['eval/fd_1step'] < 5 * results['eval/fd_floor']
  assert results['eval/straightness'] < 0.01 * results['eval/straightness_teacher']
