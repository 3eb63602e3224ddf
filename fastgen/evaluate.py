"""Evaluation of a run: its student at every k in ``eval.steps`` and, once, its teacher.

The trainer calls :meth:`RunEvaluator.evaluate` every ``eval.every`` steps and keeps the state
with the lowest :attr:`RunEvaluator.primary_key` in ``<workdir>/checkpoints_best``;
``--mode=eval`` (:func:`fastgen.inference.evaluate_workdir`) does the same for a saved checkpoint.

Every evaluation uses the same noise (``eval.seed``), so differences between evaluations are the
model's. The teacher is sampled with Heun on the Karras grid in ``eval.teacher_steps`` steps
(``2 * teacher_steps - 1`` network evaluations; 18 steps = the usual 35 NFE), guided by
classifier-free guidance at ``eval.guidance_scale`` (1: unguided; Ho & Salimans' w, so a guided
student's FID has its guided teacher's beside it). For rules whose
student is a velocity model (an objective whose ``has_velocity``: reflow, InstaFlow,
SlimFlow), ``eval.straightness_steps > 0`` also logs ``eval/straightness`` of the student's ODE
and, once, ``eval/straightness_teacher`` (:mod:`fastgen.evaluation.straightness`) on
``eval.straightness_samples`` noise draws.
"""

import math

import jax
import numpy as np

from fastgen import samplers
from fastgen.data import toy2d
from fastgen import denoiser as denoiser_lib
from fastgen.evaluation import evaluator as evaluator_lib
from fastgen.evaluation import exact, straightness
from fastgen.objectives import reflow


def real_data_config(data_config):
  """The data section of the distribution a run should reach: a coupling set's ``source``."""
  return data_config.source if data_config.name == 'couplings' else data_config


def _known_mixture(experiment):
  """``(weights, means, covs)`` of the distribution the run should reach, if known in closed form:
  the analytic teacher's mixture, or the gmm2d data set's when training from data."""
  params = experiment.teacher_params
  if isinstance(params, dict) and 'eigvecs' in params:
    return exact.mixture_from_teacher(params)
  if real_data_config(experiment.config.data).name == 'gmm2d':
    return toy2d.gmm2d_mixture()
  return None


class RunEvaluator:
  """The evaluator of ``experiment.config.eval`` bound to the experiment's samplers."""

  def __init__(self, experiment):
    self.experiment = experiment
    self.config = experiment.config.eval
    self.evaluator = evaluator_lib.make_evaluator(self.config,
                                                  real_data_config(experiment.config.data),
                                                  _known_mixture(experiment))
    self.primary_key = self.evaluator.primary_key
    self.rng = jax.random.key(self.config.seed)
    teacher = experiment.teacher
    self._teacher_sample = None
    guidance_scale = self.config.get('guidance_scale', 1.0)
    if guidance_scale != 1.0 and not getattr(teacher, 'num_classes', 0):
      raise ValueError(f'eval.guidance_scale={guidance_scale} guides the teacher\'s sampler: it '
                       f'needs a class-conditional teacher (this run\'s has no classes)')
    if teacher is not None and self.config.teacher_steps > 0:
      self._teacher_sample = jax.jit(
          lambda params, rng, labels, shape: samplers.sample(
              teacher, params, rng, shape, method='heun', num_steps=self.config.teacher_steps,
              labels=denoiser_lib.conditioning_labels(teacher, labels),
              guidance_scale=guidance_scale),
          static_argnames='shape')

    self._straightness = None
    steps = self.config.get('straightness_steps', 0)
    if steps and experiment.objective.has_velocity:
      self._straightness = jax.jit(
          lambda velocity_fn, params, noise, labels: straightness.straightness(
              lambda x, t: velocity_fn(params, x, t, labels), noise, steps,
              getattr(experiment.objective, 'ode_start', reflow.T_MAX)),
          static_argnums=0)
      self._straightness_teacher = None

  def _straightness_metrics(self, params) -> dict[str, float]:
    """``eval/straightness`` of the student's ODE and, once, ``eval/straightness_teacher``."""
    experiment = self.experiment
    num = self.config.get('straightness_samples', 1000)
    noise = jax.random.normal(jax.random.fold_in(self.rng, 1), (num,) + tuple(experiment.data.shape))
    labels = experiment.sample_labels(num)
    metrics = {'eval/straightness': float(self._straightness(
        experiment.objective.velocity, params, noise, labels))}
    teacher = experiment.teacher
    if teacher is not None and self._straightness_teacher is None:
      teacher_labels = denoiser_lib.conditioning_labels(teacher, labels)
      self._straightness_teacher = float(self._straightness(
          teacher.velocity, experiment.teacher_params, noise, teacher_labels))
    if self._straightness_teacher is not None:
      metrics['eval/straightness_teacher'] = self._straightness_teacher
    return metrics

  def _teacher_fn(self, rng, num, num_steps):
    del num_steps
    experiment = self.experiment
    return self._teacher_sample(experiment.teacher_params, rng, experiment.sample_labels(num),
                                shape=(num,) + tuple(experiment.data.shape))

  def evaluate(self, params) -> dict[str, float]:
    """Metrics of the model in ``params`` (EMA weights) at every k, and of the teacher."""
    sample_fn = lambda rng, num, k: self.experiment.sample(params, rng, num, k)
    metrics = self.evaluator.evaluate(sample_fn, self.rng)
    if self._teacher_sample is not None:
      metrics |= self.evaluator.evaluate_teacher(self._teacher_fn, self.rng)
    if self._straightness is not None:
      metrics |= self._straightness_metrics(params)
    return metrics

  def is_improvement(self, metrics, best: float | None) -> bool:
    value = metrics[self.primary_key]
    return math.isfinite(value) and (best is None or value < best)


def format_metrics(metrics: dict[str, float]) -> str:
  return '  '.join(f'{k.removeprefix("eval/")}={v:.4g}' for k, v in sorted(metrics.items())
                   if np.isscalar(v))
