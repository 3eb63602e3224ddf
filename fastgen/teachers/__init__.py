"""Frozen teachers: ``(model, params)`` where ``model(params, x, sigma, labels) -> x0_hat``.

``config.teacher.kind``:
* ``'none'``: rules that learn from data alone (teacher training, consistency training).
* ``'analytic'``: a closed-form Gaussian mixture (:mod:`fastgen.teachers.analytic`); ``mixture``
  is ``'gmm2d'`` (the exact distribution of the gmm2d data set) or ``'digits'`` (a mixture fitted
  to the digits training images, ``components_per_class`` per class, class-conditional).
* ``'checkpoint'``: the EMA network of a fastgen run in ``workdir``: a teacher-training run's
  denoiser, the student of a reflow / InstaFlow / SlimFlow run (chained pipelines), or an EDM
  checkpoint converted into a run by ``python -m fastgen.teachers.edm_import`` (docs/edm_import.md).
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from fastgen import checkpoint
from fastgen import denoiser as denoiser_lib
from fastgen.teachers import analytic

TEACHER_KINDS = ('none', 'analytic', 'checkpoint')
MIXTURES = ('gmm2d', 'digits')


def analytic_teacher(mixture: str, components_per_class: int = 4, conditional: bool = False):
  """A closed-form Gaussian-mixture teacher and its params."""
  if mixture == 'gmm2d':
    from fastgen.data import toy2d
    weights, means, covs = toy2d.gmm2d_mixture()
    labels = range(len(weights)) if conditional else None
    model = analytic.GaussianMixtureTeacher((2,), len(weights) if conditional else 0)
    return model, analytic.mixture_params(weights, means, covs, labels)
  if mixture == 'digits':
    from fastgen.data import digits
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


# The trained network of each kind of run: teacher training ('denoiser') or a rule whose student
# is itself a denoiser or velocity model (reflow and InstaFlow students, a pipeline's next teacher).
TEACHER_GROUPS = ('denoiser', 'student')


def checkpoint_teacher(workdir: str):
  """The EMA network of a finished (or running) fastgen workdir: a teacher-training run's
  'denoiser', or the 'student' of a run such as reflow, so that runs chain (2-RF -> InstaFlow)."""
  config = read_config(workdir)
  model = denoiser_lib.from_config(config.network)
  ema = checkpoint.load_params(workdir, ('ema',))
  groups = [g for g in TEACHER_GROUPS if g in ema]
  if not groups:
    raise checkpoint.CheckpointError(
        f'{workdir} holds no network usable as a teacher (EMA groups: {", ".join(ema)}; '
        f'expected one of {", ".join(TEACHER_GROUPS)})')
  return model, jax.tree.map(jnp.asarray, ema[groups[0]])


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
