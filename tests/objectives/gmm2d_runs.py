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
_ENV = dict(XLA_FLAGS='--xla_force_host_platform_device_count=1', TF_CPP_MIN_LOG_LEVEL='3',
            PYTHONPATH=REPO)

# Short runs of the rules that tune a trained EDM teacher (ECT, TCM): the gmm2d preset's network
# (3 blocks of width 128) instead of edm_gmm2d's (4 of 256), which trains ~4x faster.
SHORT_NETWORK = ('--config.network.hidden=128', '--config.network.depth=3')
SHORT_TEACHER_STEPS = 1000


def train_edm_teacher(workdir, num_steps: int = SHORT_TEACHER_STEPS) -> str:
  """A short configs/edm_gmm2d.py run with :data:`SHORT_NETWORK` into ``workdir``; its path."""
  cmd = [sys.executable, '-m', 'fastgen.main', '--config=edm_gmm2d', f'--workdir={workdir}',
         '--config.train.sample_every=0', '--config.eval.every=0',
         f'--config.train.num_steps={num_steps}', f'--config.train.checkpoint_every={num_steps}',
         *SHORT_NETWORK]
  proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, **_ENV), capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return str(workdir)


def train_and_measure(tmp_path, name: str, num_steps: int, sample_steps, num=20_000,
                      overrides=()):
  """([FD of the k-step samples for k in ``sample_steps``], FD of the teacher's Heun samples).
  Training runs on one CPU device (the 8 simulated devices of the test session are slower);
  ``overrides`` are further ``--config.*`` flags, applied to the measured config too."""
  env = dict(os.environ, **_ENV)
  cmd = [sys.executable, '-m', 'fastgen.main', f'--config={name}',
         f'--workdir={tmp_path}', '--config.train.sample_every=0', '--config.eval.every=0',
         f'--config.train.num_steps={num_steps}', f'--config.train.checkpoint_every={num_steps}',
         *overrides]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  truth, truth_params = teachers.analytic_teacher('gmm2d')
  metrics = exact.ExactMetrics(*exact.mixture_from_teacher(truth_params), num, floor_repeats=2)
  heun = samplers.sample(truth, truth_params, jax.random.key(3), (num, 2), method='heun',
                         num_steps=18)
  config = configs.get_config(name)
  for flag in overrides:
    key, value = flag.removeprefix('--config.').split('=', 1)
    *path, option = key.split('.')
    section = config
    for name_part in path:
      section = section[name_part]
    section[option] = type(section[option])(value)
  experiment = experiment_lib.Experiment(config)
  params = step_lib.sampling_params(checkpoint.load_params(str(tmp_path), ()))
  fds = [metrics(experiment.sample(params, jax.random.key(0), num, k))['fd'] for k in sample_steps]
  teacher_fd = metrics(heun)['fd']
  print(f'{name}: FD {dict(zip(sample_steps, fds))}, teacher Heun-35 {teacher_fd:.5f}, '
        f'floor {metrics.floor["fd"]:.5f}')
  return fds, teacher_fd
