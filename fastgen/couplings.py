"""Couplings (noise z, teacher sample x0 = Phi(z)) of a teacher's deterministic ODE.

Rectified-flow reflow (Liu et al. 2022, "Flow Straight and Fast", §2.2, Eq. 3), InstaFlow (Liu et
al. 2024) and SlimFlow (Zhu et al. 2024) train on pairs (z, x0) where x0 is the teacher's ODE
solution started from z, and distribution-matching rules (DMD's regression loss) use them too.
Any teacher works: everything speaks EDM's denoiser language ``D(params, x, sigma, labels)``
(:mod:`fastgen.denoiser`), so an EDM denoiser, a flow network (``'flow'`` parameterization) and
the closed-form :class:`~fastgen.teachers.analytic.GaussianMixtureTeacher` are solved alike.

The pairs live on disk as a resumable data set, ``<directory>/shard_<i>.npz`` with arrays
``noise``, ``x`` and ``label`` plus ``meta.json`` (the settings that made them). Shard ``i`` is a
pure function of ``(seed, i)`` and the teacher, computed with its batch split over the mesh's
'data' axis and written atomically by process 0, so an interrupted generation resumes at the first
missing shard and gives the pairs an uninterrupted one would have. ``data.name='couplings'``
(:mod:`fastgen.data.couplings`) reads them as batches ``{'x': x0, 'noise': z, 'label'}``; a
truncated, corrupt or misshapen shard is an error naming it (deleted, it is written again).
"""

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from fastgen import diffusion, logs, samplers, sharding
from fastgen import denoiser as denoiser_lib

ODE_METHODS = ('heun', 'euler', 'flow_euler')
META_FILE = 'meta.json'
FLOW_T_MAX = 1.0 - 1e-5  # where flow-time solvers start: x = FLOW_T_MAX z at t = FLOW_T_MAX


def solve_teacher_ode(teacher, teacher_params, noise, labels, num_steps: int, *,
                      method: str = 'heun', sigma_min: float = 0.002, sigma_max: float = 80.0,
                      rho: float = 7.0, flow_t_max: float = FLOW_T_MAX):
  """x0 = Phi(z): the teacher's deterministic ODE solved from standard-normal ``noise`` z.

  'heun' / 'euler': the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al.
  2022, Eq. 3) from x = sigma_max z down to sigma = 0 on the Karras grid (Eq. 5), Heun (Algorithm
  1, 2 num_steps - 1 evaluations) or Euler; z is the t = 1 end of rectified-flow time, since
  x_t = x / (1 + sigma) -> z as sigma -> inf (:mod:`fastgen.diffusion`), truncated at sigma_max as
  in EDM. 'flow_euler': Euler on the flow ODE dx_t/dt = v(x_t, t) (Liu et al. 2022, Eq. 1) on a
  uniform grid from x = T z at t = T = ``flow_t_max`` to 0, for (nearly) straight teachers such
  as a 2-rectified flow (T: where that teacher's own ODE starts, its ``objective.t_max``).
  Labels reach the teacher only if it is class-conditional. Pure and jit-able.
  """
  if method not in ODE_METHODS:
    raise ValueError(f'unknown coupling ODE method {method!r}; known: {", ".join(ODE_METHODS)}')
  labels = denoiser_lib.conditioning_labels(teacher, labels)
  if method == 'flow_euler':
    velocity_fn = lambda x_t, t: teacher.velocity(teacher_params, x_t, t, labels)
    return samplers.flow_euler(velocity_fn, noise, num_steps, flow_t_max)
  denoise = samplers.denoise_closure(teacher, teacher_params, labels)
  sigmas = diffusion.karras_sigmas(num_steps, sigma_min, sigma_max, rho)
  return samplers.SAMPLERS[method](denoise, noise, sigmas)


def shard_path(directory: str, index: int) -> str:
  return os.path.join(directory, f'shard_{index:05d}.npz')


def _shard_pairs(teacher, teacher_params, key, *, shard_size, shape, num_classes, ode_steps,
                 ode_method, ode_t_max, mesh):
  """``(noise, x0, label)`` of one shard, computed with the batch split over 'data'."""
  key_noise, key_label = jax.random.split(key)
  batch = sharding.batch_sharded(mesh)
  noise = jax.lax.with_sharding_constraint(
      jax.random.normal(key_noise, (shard_size,) + tuple(shape)), batch)
  labels = (jax.random.randint(key_label, (shard_size,), 0, num_classes) if num_classes
            else jnp.zeros((shard_size,), jnp.int32))
  labels = jax.lax.with_sharding_constraint(labels, batch)
  x0 = solve_teacher_ode(teacher, teacher_params, noise, labels, ode_steps, method=ode_method,
                         flow_t_max=ode_t_max)
  return noise, x0, labels


def write_couplings(directory: str, teacher, teacher_params, *, shape, num_classes: int,
                    num_pairs: int, shard_size: int, ode_steps: int, ode_method: str = 'heun',
                    ode_t_max: float = FLOW_T_MAX, seed: int = 0, mesh=None) -> dict:
  """Write the shards of ``num_pairs`` pairs that ``directory`` lacks; returns the metadata.

  ``shard_size`` must divide ``num_pairs`` and be a multiple of the mesh's data-parallel size.
  A directory written with other settings is refused, never overwritten.
  """
  mesh = mesh or sharding.make_mesh()
  if shard_size < 1 or num_pairs < shard_size or num_pairs % shard_size:
    raise ValueError(f'data.num_pairs={num_pairs} must be a positive multiple of '
                     f'data.shard_size={shard_size}')
  if shard_size % sharding.data_size(mesh):
    raise ValueError(f'data.shard_size={shard_size} must be a multiple of the '
                     f'{sharding.data_size(mesh)} data-parallel devices')
  if ode_method not in ODE_METHODS:
    raise ValueError(f'unknown data.ode_method {ode_method!r}; known: {", ".join(ODE_METHODS)}')
  meta = {'shape': list(shape), 'num_classes': int(num_classes), 'num_pairs': int(num_pairs),
          'shard_size': int(shard_size), 'ode_steps': int(ode_steps), 'ode_method': ode_method,
          'seed': int(seed), 'teacher': type(teacher).__name__}
  if ode_t_max != FLOW_T_MAX:  # recorded only when set: sets written before the option still fit
    if ode_method != 'flow_euler' or not 0.0 < ode_t_max < 1.0:
      raise ValueError(f'data.ode_t_max={ode_t_max} is where a flow_euler solve starts: it needs '
                       f"data.ode_method='flow_euler' (got {ode_method!r}) and 0 < ode_t_max < 1")
    meta['ode_t_max'] = float(ode_t_max)
  os.makedirs(directory, exist_ok=True)
  meta_path = os.path.join(directory, META_FILE)
  if os.path.exists(meta_path):
    with open(meta_path) as f:
      saved = json.load(f)
    if saved != meta:
      differ = sorted(k for k in meta.keys() | saved.keys() if saved.get(k) != meta.get(k))
      raise ValueError(f'the coupling set in {directory} was made with other settings '
                       f'({", ".join(f"{k}: {saved.get(k)} there, {meta.get(k)} here" for k in differ)}); '
                       f'use another data.directory or workdir')
  elif jax.process_index() == 0:
    _write_json(meta_path, meta)
  missing = [i for i in range(num_pairs // shard_size)
             if not os.path.exists(shard_path(directory, i))]
  if missing:
    logging.info('solving the teacher ODE (%s, %d steps) for %d of %d coupling shards in %s',
                 ode_method, ode_steps, len(missing), num_pairs // shard_size, directory)
    make = jax.jit(lambda params, key: _shard_pairs(
        teacher, params, key, shard_size=shard_size, shape=tuple(shape), num_classes=num_classes,
        ode_steps=ode_steps, ode_method=ode_method, ode_t_max=ode_t_max, mesh=mesh))
    progress = logs.Progress('coupling shards', len(missing), 'shards')
    for index in missing:
      noise, x0, labels = make(teacher_params, jax.random.fold_in(jax.random.key(seed), index))
      arrays = {'noise': sharding.all_rows(noise, shard_size).astype(np.float32),
                'x': sharding.all_rows(x0, shard_size).astype(np.float32),
                'label': sharding.all_rows(labels, shard_size).astype(np.int32)}
      if jax.process_index() == 0:
        tmp = shard_path(directory, index) + '.tmp.npz'
        np.savez(tmp, **arrays)
        os.replace(tmp, shard_path(directory, index))
      progress.advance()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('fastgen couplings written')
  return meta


def _write_json(path, obj):
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def read_couplings(directory: str) -> tuple[dict, dict[str, np.ndarray]]:
  """``(meta, {'noise', 'x', 'label'})``: every pair of a complete coupling set, in shard order."""
  meta_path = os.path.join(directory, META_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f'no coupling set in {directory} ({META_FILE} missing)')
  with open(meta_path) as f:
    meta = json.load(f)
  num_shards = meta['num_pairs'] // meta['shard_size']
  paths = [shard_path(directory, i) for i in range(num_shards)]
  absent = [p for p in paths if not os.path.exists(p)]
  if absent:
    raise FileNotFoundError(f'the coupling set in {directory} is incomplete: {len(absent)} of '
                            f'{num_shards} shards missing (first: {absent[0]}); a training run '
                            f'with data.name="couplings" writes them')
  shards = [_read_shard(p, meta) for p in paths]
  return meta, {k: np.concatenate([s[k] for s in shards]) for k in _SHARD_DTYPES}


_SHARD_DTYPES = {'noise': np.float32, 'x': np.float32, 'label': np.int32}


def _read_shard(path: str, meta: dict) -> dict[str, np.ndarray]:
  """The arrays of one shard, checked against the set's ``meta``; a truncated, corrupt or
  misshapen shard is a ValueError naming it."""
  remedy = 'delete it and a run with data.name="couplings" writes it again'
  try:
    with np.load(path, allow_pickle=False) as shard:
      arrays = {k: shard[k] for k in _SHARD_DTYPES}
  except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise ValueError(f'coupling shard {path} is truncated or corrupt ({type(e).__name__}: '
                     f'{str(e).splitlines()[0] if str(e) else ""}); {remedy}') from None
  rows = (meta['shard_size'],)
  expected = {'noise': rows + tuple(meta['shape']), 'x': rows + tuple(meta['shape']),
              'label': rows}
  wrong = [f'{k} {v.dtype}{list(v.shape)} (expected {np.dtype(_SHARD_DTYPES[k])}'
           f'{list(expected[k])})' for k, v in arrays.items()
           if v.shape != expected[k] or v.dtype != _SHARD_DTYPES[k]]
  if wrong:
    raise ValueError(f'coupling shard {path} does not fit {META_FILE}: {", ".join(wrong)}; '
                     f'{remedy}')
  return arrays


def coupling_directory(data_config, workdir: str) -> str:
  """``data.directory``, or ``<workdir>/couplings`` when it is ''."""
  directory = data_config.get('directory', '')
  if directory:
    return directory
  if not workdir:
    raise ValueError('data.name="couplings" with data.directory="" keeps the pairs in the run\'s '
                     'workdir, but none was given: set data.directory')
  return os.path.join(workdir, 'couplings')
