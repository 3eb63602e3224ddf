"""Frozen teachers: ``(model, params)`` where ``model(params, x, sigma, labels) -> x0_hat``.

``config.teacher.kind``:
* ``'none'``: rules that learn from data alone (teacher training, consistency training).
* ``'analytic'``: a closed-form Gaussian mixture (:mod:`fastgen.teachers.analytic`); ``mixture``
  is ``'gmm2d'`` (the exact distribution of the gmm2d data set) or ``'digits'`` (a mixture fitted
  to the digits training images, ``components_per_class`` per class, class-conditional).
* ``'checkpoint'``: the EMA network of a fastgen run in ``workdir`` (its objective's
  ``network_group``): a teacher-training run's denoiser, the student of a reflow / InstaFlow /
  SlimFlow run (chained pipelines), or an EDM checkpoint converted into a run by
  ``python -m fastgen.teachers.edm_import`` (docs/edm_import.md).
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from fastgen import checkpoint, objectives
from fastgen import denoiser as denoiser_lib
from fastgen.data import digits, toy2d
from fastgen.teachers import analytic

TEACHER_KINDS = ('none', 'analytic', 'checkpoint')
MIXTURES = ('gmm2d', 'digits')


def analytic_teacher(mixture: str, components_per_class: int = 4, conditional: bool = False):
  """A closed-form Gaussian-mixture teacher and its params."""
  if mixture == 'gmm2d':
    weights, means, covs = toy2d.gmm2d_mixture()
    labels = range(len(weights)) if conditional else None
    model = analytic.GaussianMixtureTeacher((2,), len(weights) if conditional else 0)
    return model, analytic.mixture_params(weights, means, covs, labels)
  if mixture == 'digits':
    x, y = digits.load_digits_array('train')
    weights, means, covs, labels = analytic.fit_mixture(
        x, y, components_per_class=components_per_class)
    model = analytic.GaussianMixtureTeacher(x.shape[1:], 10 if conditional else 0)
    return model, analytic.mixture_params(weights, means, covs, labels)
  raise ValueError(f'unknown teacher.mixture {mixture!r}; known: {", ".join(MIXTURES)}')


def read_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: teacher.workdir must be a fastgen training workdir')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def checkpoint_teacher(workdir: str):
  """The EMA network of a finished (or running) fastgen workdir: the ``network_group`` of its
  objective (a teacher-training run's 'denoiser', the 'student' of a run such as reflow), so that
  runs chain (2-RF -> InstaFlow)."""
  config = read_config(workdir)
  group = objectives.objective_class(config.objective.name).network_group
  model = denoiser_lib.from_config(config.network)
  ema = checkpoint.load_params(workdir, ('ema',))
  if group not in ema:
    raise checkpoint.CheckpointError(
        f'{workdir} holds no {group!r} network, the network of objective '
        f'{config.objective.name!r} (EMA groups: {", ".join(ema)})')
  return model, jax.tree.map(jnp.asarray, ema[group])


def load_teacher(teacher_config):
  """``(model, params)``, or ``(None, None)`` for ``kind='none'``."""
  kind = teacher_config.kind
  if kind == 'none':
    return None, None
  if kind == 'analytic':
    return analytic_teacher(teacher_config.mixture, teacher_config.get('components_per_class', 4),
                            teacher_config.get('conditional', False))
  if kind == 'checkpoint':
    if not teacher_config.get('workdir'):
      raise ValueError('teacher.kind="checkpoint" needs --config.teacher.workdir=<teacher run>')
    return checkpoint_teacher(teacher_config.workdir)
  raise ValueError(f'unknown teacher.kind {kind!r}; known: {", ".join(TEACHER_KINDS)}')


def check_network_teacher(model, params, example_shape, workdir: str) -> None:
  """A :class:`fastgen.checkpoint.CheckpointError` if the network that the teacher workdir's
  ``config.json`` describes does not have the checkpoint's arrays (for inputs shaped
  ``example_shape``): its names, shapes and dtypes are compared before any call."""
  x = jnp.zeros((1,) + tuple(example_shape), jnp.float32)
  labels = jnp.zeros((1,), jnp.int32) if model.num_classes else None
  expected = jax.eval_shape(model.init, jax.random.key(0), x, labels)
  mismatch = checkpoint.tree_mismatch(params, expected)
  if mismatch:
    raise checkpoint.CheckpointError(
        f'teacher {workdir}: the network of its config.json does not fit its checkpoint: '
        f'{checkpoint.listed(mismatch)}')

