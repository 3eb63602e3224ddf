"""Train a gmm2d config through the CLI and measure its samples exactly: the Fréchet distance of
k-step samples to the known mixture, and the teacher's Heun-18 (35 NFE) FD as the yardstick."""

import os
import subprocess
import sys

import jax

from fastgen import checkpoint, configs, samplers, teachers
from fastgen import experiment as experiment_lib
from fastgen import step as step_lib
from fastgen.evaluation import exact

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_and_measure(tmp_path, name: str, num_steps: int, sample_steps, *overrides,
                      num=20_000):
  """([FD of the k-step samples for k in ``sample_steps``], FD of the teacher's Heun samples),
  trained with the command-line ``overrides`` (``--config.seed=1``). Training runs on one CPU
  device (the 8 simulated devices of the test session are slower)."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  cmd = [sys.executable, '-m', 'fastgen.main', f'--config=configs/{name}.py',
         f'--workdir={tmp_path}', '--config.train.sample_every=0', '--config.eval.every=0',
         f'--config.train.num_steps={num_steps}', f'--config.train.checkpoint_every={num_steps}',
         *overrides]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  truth, truth_params = teachers.analytic_teacher('gmm2d')
  metrics = exact.ExactMetrics(*exact.mixture_from_teacher(truth_params), num, floor_repeats=2)
  heun = samplers.sample(truth, truth_params, jax.random.key(3), (num, 2), method='heun',
                         num_steps=18)
  experiment = experiment_lib.Experiment(configs.get_config(name))
  params = step_lib.sampling_params(checkpoint.load_params(str(tmp_path), ()))
  fds = [metrics(experiment.sample(params, jax.random.key(0), num, k))['fd'] for k in sample_steps]
  teacher_fd = metrics(heun)['fd']
  print(f'{name}: FD {dict(zip(sample_steps, fds))}, teacher Heun-35 {teacher_fd:.5f}, '
        f'floor {metrics.floor["fd"]:.5f}')
  return fds, teacher_fd
