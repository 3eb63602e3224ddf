"""InstaFlow: the one-step loss vanishes when one Euler step lands on the coupling's endpoint, and a
reflow run's workdir is a teacher whose weights the InstaFlow student starts from."""

import os

import jax
import numpy as np
import pytest

from fastgen import checkpoint, configs, couplings, teachers
from fastgen import experiment as experiment_lib
from fastgen.objectives import instaflow
from tests.objectives import image_configs
from tests.objectives import rectified_flow_toys as toys


@pytest.mark.parametrize('metric', ['l2', 'pseudo_huber'])
def test_loss_is_minimal_when_one_step_lands_on_the_coupling(metric):
  objective = instaflow.InstaFlow(toys.ScaledExactVelocity(), teacher=None, metric=metric,
                                  init_from_teacher=False)
  batch = toys.coupling_batch()
  params = objective.init(jax.random.key(0), batch, None)
  x0_hat = instaflow.one_step(lambda x, t: toys.exact_velocity(x, t), batch['noise'])
  np.testing.assert_allclose(x0_hat, batch['x'], rtol=1e-4, atol=1e-4)  # T z is 1e-5 off x_T
  # Minimal at v* up to that offset: lower than at scales 0.1% away, far lower than 10% away.
  loss = toys.loss_and_grad(objective, params, batch)[0]
  perturbed = {scale: toys.loss_and_grad(objective, toys.with_scale(params, scale), batch)[0]
               for scale in (0.9, 0.999, 1.001, 1.1)}
  assert all(loss < value for value in perturbed.values())
  assert loss < 1e-3 * min(perturbed[0.9], perturbed[1.1])


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
