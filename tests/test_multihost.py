"""The trainer as 2 JAX processes on this machine (CPU collectives) equals 1 process on the same
4 devices: same parameters, same logged losses and in-loop metrics, one writer of the logs."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from fastgen import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ['--config=configs/edm_gmm2d.py', '--config.data.batch_size=64',
         '--config.train.num_steps=10', '--config.train.log_every=5',
         '--config.train.checkpoint_every=5', '--config.train.sample_every=0',
         '--config.eval.every=10', '--config.eval.num_samples=512', '--config.eval.batch_size=256']


def _train(workdir, devices_per_process, process_id=None, port=None):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices_per_process}'
  flags = FLAGS + [f'--workdir={workdir}']
  if process_id is not None:
    flags += ['--config.distributed.enabled=True', '--config.distributed.num_processes=2',
              f'--config.distributed.coordinator_address=localhost:{port}',
              f'--config.distributed.process_id={process_id}']
  return subprocess.Popen([sys.executable, '-m', 'fastgen.main', *flags], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items()
             if k != 'wall_time' and not k.endswith(('steps_per_sec', 'seconds'))} for line in f]


def test_two_processes_train_like_one_process_on_the_same_devices(tmp_path):
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  runs = [_train(one, 4)] + [_train(two, 2, i, port) for i in range(2)]
  for run in runs:
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output[-3000:]

  # Written on 4 devices, read here on this session's 8: load_params ignores the topology.
  params_one = checkpoint.load_params(one, ('params',))
  params_two = checkpoint.load_params(two, ('params',))
  assert jax.tree.structure(params_one) == jax.tree.structure(params_two)
  for a, b in zip(jax.tree.leaves(params_one), jax.tree.leaves(params_two)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  records_one, records_two = _records(one), _records(two)
  assert [r['step'] for r in records_two] == [5, 10]  # process 0 alone writes the log
  assert 'eval/fd_18step' in records_two[-1]
  for r1, r2 in zip(records_one, records_two):
    assert r1.keys() == r2.keys()
    for key in r1:
      np.testing.assert_allclose(r2[key], r1[key], rtol=1e-4, err_msg=key)
  assert sorted(os.listdir(os.path.join(two, 'checkpoints'))) == ['10', '5']
