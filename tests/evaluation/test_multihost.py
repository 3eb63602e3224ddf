"""Evaluation across 2 local JAX processes (CPU, gloo): every sample counted exactly once."""

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = r'''
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
jax.distributed.initialize(f'localhost:{sys.argv[2]}', num_processes=2, process_id=int(sys.argv[1]))
from fastgen import sharding
from fastgen.evaluation import evaluator

class Identity:  # features = the samples themselves
  name, dim = 'identity', 3
  def features(self, samples):
    return samples

mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
data = np.random.default_rng(0).standard_normal((60, 3)).astype(np.float32)  # batches of 20

def sample_fn(rng, num, num_steps):
  i = sample_fn.calls
  sample_fn.calls += 1
  rows = data[i * num:(i + 1) * num]
  half = num // 2
  local = rows[jax.process_index() * half:(jax.process_index() + 1) * half]
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P('data')), local)
sample_fn.calls = 0

ev = evaluator.FidEvaluator(Identity(), (np.zeros(3), np.eye(3)), num_samples=30, batch_size=20)
stats = ev.stats(sample_fn, jax.random.key(0), 1)
assert stats.count == 30, stats.count
np.testing.assert_allclose(stats.cov, np.cov(data[:30], rowvar=False, dtype=np.float64), rtol=1e-12)
replicated = jax.device_put(jax.numpy.asarray(data[:8]), NamedSharding(mesh, P()))
assert len(sharding.local_rows(replicated, 8)) == (8 if jax.process_index() == 0 else 0)
np.testing.assert_array_equal(sharding.all_rows(sample_fn(None, 20, 1), 15), data[40:55])
print('ok')
'''


def test_two_processes():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  workers = [subprocess.Popen([sys.executable, '-c', WORKER, str(i), str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
  outputs = [w.communicate(timeout=120)[0] for w in workers]
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0 and output.rstrip().endswith('ok'), output[-3000:]
