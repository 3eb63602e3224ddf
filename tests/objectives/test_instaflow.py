"""InstaFlow: the one-step loss vanishes when one Euler step lands on the coupling's endpoint, and a
reflow run's workdir is a teacher whose weights the InstaFlow student starts from."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import checkpoint, configs, couplings, teachers
from fastgen import experiment as experiment_lib
from fastgen.objectives import instaflow
from tests.objectives import image_configs
from tests.objectives import rectified_flow_toys as toys


@pytest.mark.parametrize('metric', ['l2', 'pseudo_huber'])
def test_loss_is_minimal_when_one_step_lands_on_the_coupling(metric):
  # Started at t = 1 - 1e-5, so that T z is 1e-5 off x_T and the minimum is sharp at v*.
  objective = instaflow.InstaFlow(toys.ScaledExactVelocity(), teacher=None, metric=metric,
                                  init_from_teacher=False, t_start=1.0 - 1e-5)
  batch = toys.coupling_batch()
  params = objective.init(jax.random.key(0), batch, None)
  x0_hat = instaflow.one_step(lambda x, t: toys.exact_velocity(x, t), batch['noise'],
                              objective.t_start)
  np.testing.assert_allclose(x0_hat, batch['x'], rtol=1e-4, atol=1e-4)
  # Minimal at v* up to that offset: lower than at scales 0.1% away, far lower than 10% away.
  loss = toys.loss_and_grad(objective, params, batch)[0]
  perturbed = {scale: toys.loss_and_grad(objective, toys.with_scale(params, scale), batch)[0]
               for scale in (0.9, 0.999, 1.001, 1.1)}
  assert all(loss < value for value in perturbed.values())
  assert loss < 1e-3 * min(perturbed[0.9], perturbed[1.1])


@dataclasses.dataclass(frozen=True)
class _IdentityVelocity:
  """v(x_t, t) = x_t: one Euler step from t = T gives T z - T (T z) = T (1 - T) z, which tells
  the starting time apart (T = 1 - 1e-3: 1.0e-3 z; T = 1 - 1e-5: 1e-5 z)."""
  num_classes: int = 0

  def init(self, rng, x, labels=None):
    del rng, x, labels
    return {}

  def velocity(self, params, x_t, t, labels=None, *, train=False, rng=None):
    del params, t, labels, train, rng
    return x_t


def test_the_one_step_map_starts_at_the_official_time():
  # RectifiedFlow's one-step distillation (losses.py, reflow_t_schedule='t0') and its Euler
  # sampler start at its time eps = 1e-3: t = 1 - 1e-3 here, sigma = 999 for an EDM network.
  objective = instaflow.InstaFlow(_IdentityVelocity(), teacher=None, metric='l2',
                                  init_from_teacher=False)
  assert objective.t_start == 1.0 - 1e-3
  factor = (1.0 - 1e-3) * 1e-3
  noise = jax.random.normal(jax.random.key(3), (256, 2))
  one_step = objective.sample({'student': {}}, None, jax.random.key(3), None, (256, 2), 1)
  np.testing.assert_allclose(one_step, factor * noise, rtol=1e-4)
  batch = {'x': jnp.zeros_like(noise), 'noise': noise, 'label': jnp.zeros((256,), jnp.int32)}
  loss = objective.loss('student', {'student': {}}, None, None, batch, jax.random.key(1), 0)[0]
  np.testing.assert_allclose(loss, factor**2 * jnp.mean(noise**2), rtol=1e-4)


def _tiny(config, tmp_path, name):
  config.data.update(batch_size=64, num_pairs=512, shard_size=256, ode_steps=4,
                     directory=str(tmp_path / name / 'couplings'))
  config.network.update(hidden=16, depth=1, emb_dim=16)
  return config


def test_a_reflow_workdir_is_the_teacher_of_an_instaflow_run(tmp_path):
  # A reflow workdir as the trainer leaves it: config.json and a checkpoint of the state
  # (initialised, not trained: this test is about loading, and training compiles slowly).
  reflow_config = _tiny(configs.get_config('reflow_gmm2d'), tmp_path, 'reflow')
  reflow_config.data = reflow_config.data.source  # no couplings needed to initialise
  reflow_config.objective.couplings = 'online'
  reflow_dir = str(tmp_path / 'reflow')
  reflow_experiment = experiment_lib.Experiment(reflow_config, reflow_dir)
  reflow_state = reflow_experiment.initial_state()
  reflow_state['ema']['student'] = jax.tree.map(lambda p: p + 0.5, reflow_state['ema']['student'])
  os.makedirs(reflow_dir)
  experiment_lib.save_config(reflow_config, reflow_dir)
  checkpointer = checkpoint.Checkpointer(reflow_dir)
  checkpointer.save(1, reflow_state, {'step': 1})
  checkpointer.close()

  config = _tiny(configs.get_config('instaflow_gmm2d'), tmp_path, 'instaflow')
  config.teacher.workdir = reflow_dir
  teacher, teacher_params = teachers.load_teacher(config.teacher)
  assert teacher.parameterization == 'flow'
  jax.tree.map(np.testing.assert_array_equal, teacher_params, reflow_state['ema']['student'])
  # Building the run solves the 2-RF's ODE for the couplings.
  experiment = experiment_lib.Experiment(config, str(tmp_path / 'instaflow'))
  initial = experiment.initial_state()['params']['student']
  jax.tree.map(np.testing.assert_array_equal, initial, teacher_params)
  batch = next(experiment.data)
  np.testing.assert_allclose(batch['x'], couplings.solve_teacher_ode(
      teacher, teacher_params, batch['noise'], None, 4, method='flow_euler'), rtol=1e-3)


def test_image_configs_start_from_their_reflow_teacher():
  config = configs.get_config('instaflow_digits')
  assert config.network == configs.get_config('reflow_digits').network
  objective, teacher_params, params = image_configs.abstract_init(config)
  assert jax.tree.structure(params['student']) == jax.tree.structure(teacher_params)
