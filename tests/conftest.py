"""Test session setup: 8 simulated CPU devices (sharding tests), and one persistent compilation
cache for the session, shared by the xdist workers and the CLI runs they start as subprocesses
(many tests compile the same small programs; a cached executable is the same binary, so results
do not change). Every program is cached, however fast it compiled, as the CLI does. The cache
starts empty in every session.

Each xdist worker, with the processes it starts, runs on its own share of the CPU cores it was
given (worker i of n: every n-th core from the i-th), so the workers' XLA thread pools do not
contend for the same cores (docs/performance.md, "The test suite with one core per worker")."""

import os
import tempfile

import pytest


def _pin_xdist_worker():
  worker = os.environ.get('PYTEST_XDIST_WORKER')
  count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 0))
  if not (worker and count and hasattr(os, 'sched_setaffinity')):
    return
  cores = sorted(os.sched_getaffinity(0))
  if count <= len(cores):
    os.sched_setaffinity(0, cores[int(worker.removeprefix('gw'))::count])


_pin_xdist_worker()

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='fastgen-jax-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# An empty asset cache: tests never read weights a user fetched (python -m fastgen.assets fetch).
os.environ['FASTGEN_CACHE'] = tempfile.mkdtemp(prefix='fastgen-assets-')


@pytest.fixture
def one_device(monkeypatch):
  """Runs built in this process use a mesh of the first device only. For tests whose subject is
  not sharding: the session's 8 simulated devices share 2 cores, which makes an in-process
  training run 2-3x slower than on one device; the sharded runs have tests of their own."""
  import jax  # pylint: disable=g-import-not-at-top: after XLA_FLAGS is set, as for every test
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fastgen import sharding  # pylint: disable=g-import-not-at-top

  def first_device_mesh(model: int = 1):
    if model != 1:
      raise ValueError(f'the one_device fixture has no mesh.model={model}')
    return jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1),
                             (sharding.DATA_AXIS, sharding.MODEL_AXIS),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2)  # as make_mesh
  monkeypatch.setattr(sharding, 'make_mesh', first_device_mesh)
