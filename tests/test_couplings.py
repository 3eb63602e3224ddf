"""Couplings: the teacher-ODE solver against the closed-form flow of a Gaussian, and the on-disk
coupling set (sharded writing, resumption shard by shard, refusal of other settings, damaged
shards named, the stream)."""

import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fastgen import couplings, data, sharding, teachers
from fastgen.teachers import analytic
from tests.objectives import rectified_flow_toys as toys


def test_teacher_ode_matches_the_closed_form_flow_of_a_gaussian():
  # For x0 ~ N(mu, s^2 I) the probability-flow ODE keeps x - mu proportional to
  # sqrt(s^2 + sigma^2), so Phi(z) = mu + s / sqrt(s^2 + sigma_max^2) (sigma_max z - mu).
  mu, s = np.array([0.5, -1.0]), 0.3
  teacher = analytic.GaussianMixtureTeacher((2,))
  params = analytic.mixture_params([1.0], mu[None], (s**2 * np.eye(2))[None])
  noise = jax.random.normal(jax.random.key(0), (256, 2))
  exact = mu + s / np.sqrt(s**2 + 80.0**2) * (80.0 * np.asarray(noise) - mu)
  solve = jax.jit(couplings.solve_teacher_ode, static_argnums=(0, 4))
  error = {n: float(np.abs(solve(teacher, params, noise, None, n) - exact).max())
           for n in (32, 64, 128)}
  # Heun is second order: halving the steps' size quarters the error (measured 0.018, 0.0042,
  # 0.0010).
  assert error[128] < 1.5e-3 and error[32] / error[64] > 3.5 and error[64] / error[128] > 3.5
  with pytest.raises(ValueError, match='ODE method'):
    couplings.solve_teacher_ode(teacher, params, noise, None, 4, method='rk4')


def _write(directory, **overrides):
  teacher, params = teachers.analytic_teacher('gmm2d', conditional=True)
  kwargs = dict(shape=(2,), num_classes=8, num_pairs=64, shard_size=16, ode_steps=4, seed=3,
                mesh=sharding.make_mesh()) | overrides
  return couplings.write_couplings(str(directory), teacher, params, **kwargs), teacher, params


def test_coupling_set_is_the_teacher_ode_written_resumably(tmp_path):
  _, teacher, params = _write(tmp_path)  # 4 shards, each split over the 8 devices
  _, pairs = couplings.read_couplings(str(tmp_path))
  assert pairs['x'].shape == pairs['noise'].shape == (64, 2) and pairs['label'].shape == (64,)
  assert len(np.unique(pairs['label'])) > 1 and pairs['label'].max() < 8
  # Each x0 is Phi(z) of its own noise and label. The written set ran split over 8 devices, this
  # solve on one: XLA may round the two programs differently, and the ODE starts at sigma_max = 80,
  # where one float32 ulp is ~1e-5, so the bound is a few ulps at that scale (1e-4), not 1e-5
  # (measured: 1.6e-5 on one machine).
  np.testing.assert_allclose(
      pairs['x'], couplings.solve_teacher_ode(teacher, params, pairs['noise'],
                                              pairs['label'], 4), rtol=1e-5, atol=1e-4)
  # An interrupted generation: shard 2 missing. Only it is written again, identical.
  kept = os.path.getmtime(couplings.shard_path(str(tmp_path), 1))
  os.remove(couplings.shard_path(str(tmp_path), 2))
  with pytest.raises(FileNotFoundError, match='incomplete'):
    couplings.read_couplings(str(tmp_path))
  _write(tmp_path)
  assert os.path.getmtime(couplings.shard_path(str(tmp_path), 1)) == kept
  _, again = couplings.read_couplings(str(tmp_path))
  for key in pairs:
    np.testing.assert_array_equal(again[key], pairs[key])
  with pytest.raises(ValueError, match='ode_steps: 4 there, 5 here'):
    _write(tmp_path, ode_steps=5)
  with pytest.raises(ValueError, match='multiple of the 8 data-parallel devices'):
    _write(tmp_path / 'other', shard_size=12, num_pairs=36)


def test_flow_euler_couplings_start_at_ode_t_max(tmp_path):
  # One Euler step from x = T z at t = T lands on T z - T v(T z, T): the pairs start where the
  # teacher's ODE starts. The default start is left out of the metadata (sets written before the
  # option still match); another start is recorded, and refused for a sigma-grid method.
  teacher, params = toys.ScaledExactVelocity(), {'scale': jnp.ones(())}
  noise = jax.random.normal(jax.random.key(0), (16, 2))
  for t_max in (couplings.FLOW_T_MAX, 0.9):
    x0 = couplings.solve_teacher_ode(teacher, params, noise, None, 1, method='flow_euler',
                                     flow_t_max=t_max)
    np.testing.assert_allclose(x0, t_max * noise - t_max * toys.exact_velocity(
        t_max * noise, jnp.full((16,), t_max)), rtol=1e-6)
  meta, _, _ = _write(tmp_path / 'default')
  assert 'ode_t_max' not in meta
  meta, _, _ = _write(tmp_path / 'late', ode_method='flow_euler', ode_t_max=0.999)
  assert meta['ode_t_max'] == 0.999
  with pytest.raises(ValueError, match='ode_t_max: 0.999 there, 0.99 here'):
    _write(tmp_path / 'late', ode_method='flow_euler', ode_t_max=0.99)
  with pytest.raises(ValueError,
                     match="data.ode_t_max=0.999 .* needs data.ode_method='flow_euler'"):
    _write(tmp_path / 'heun', ode_t_max=0.999)


def test_coupling_stream_keeps_pairs_together_and_resumes(tmp_path):
  _write(tmp_path)
  _, pairs = couplings.read_couplings(str(tmp_path))
  config = ml_collections.ConfigDict(dict(name='couplings', batch_size=24, directory=str(tmp_path)))
  it = data.make_dataset(config, seed=1)
  assert it.shape == (2,) and it.num_classes == 8
  first = [next(it) for _ in range(3)]  # 72 > 64 pairs: the third batch wraps into epoch 2
  state = it.get_state()
  later = [next(it) for _ in range(2)]
  for batch in first:
    rows = [int(np.flatnonzero((pairs['noise'] == z).all(1))[0]) for z in batch['noise']]
    np.testing.assert_array_equal(batch['x'], pairs['x'][rows])
    np.testing.assert_array_equal(batch['label'], pairs['label'][rows])
  resumed = data.make_dataset(config, seed=1)
  resumed.set_state(state)
  for a, b in zip(later, [next(resumed) for _ in range(2)]):
    for key in ('x', 'noise', 'label'):
      np.testing.assert_array_equal(a[key], b[key])
  host = data.make_dataset(config, seed=1, process_index=1, process_count=2)
  np.testing.assert_array_equal(next(host)['noise'], first[0]['noise'][12:])


@pytest.mark.parametrize('fault, message', [
    ('truncated', 'is truncated or corrupt (BadZipFile'),
    ('random bytes', 'is truncated or corrupt (BadZipFile: Bad CRC-32'),
    ('empty', 'is truncated or corrupt (EOFError'),
    ('other set', 'does not fit meta.json: noise float32[8, 2] (expected float32[16, 2])'),
])
def test_damaged_shard_is_named_and_rewritten_once_deleted(tmp_path, fault, message):
  _write(tmp_path)
  _, pairs = couplings.read_couplings(str(tmp_path))
  path = couplings.shard_path(str(tmp_path), 2)
  data = bytearray(open(path, 'rb').read())
  if fault == 'truncated':
    data = data[:len(data) // 2]
  elif fault == 'random bytes':  # inside the 'noise' record: its CRC-32 no longer matches
    data[100:116] = np.random.default_rng(0).bytes(16)
  elif fault == 'empty':
    data = b''
  else:  # a shard of a set with another shard size
    np.savez(path, **{k: v[:8] for k, v in pairs.items()})
  if fault != 'other set':
    open(path, 'wb').write(bytes(data))
  with pytest.raises(ValueError, match=f'coupling shard {path} ' + re.escape(message)):
    couplings.read_couplings(str(tmp_path))
  os.remove(path)
  _write(tmp_path)
  _, again = couplings.read_couplings(str(tmp_path))
  for key in pairs:
    np.testing.assert_array_equal(again[key], pairs[key])
