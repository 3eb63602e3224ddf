"""Truncated consistency models, TCM (Lee et al. 2024, "Truncated Consistency Models",
arXiv:2410.14895, ICLR 2025; official code github.com/NVlabs/TCM, built on ECT's).

Two stages (the paper's Figure 1a):

1. a standard consistency model f_1 over the whole range [0, T]: fastgen's ECT rule
   (:mod:`fastgen.objectives.ect`; ``configs/tcm_<data>.py:stage1``);
2. a truncated consistency model over [t', T] (this rule), initialised from f_1, with the
   boundary parameterization (the paper's truncated consistency function)

     f_trunc(x, t) = f_theta(x, t)     for t >= t',
                     sg f_1(x, t)       for t < t'       (the frozen stage-1 model),

   so that the consistency condition at t' ties the new model to f_1 instead of the identity at
   t = 0, and cannot collapse to a trivial solution. The loss splits each batch:
   a fraction rho of it at t = t' (the boundary loss), the rest with ln t from a heavy-tailed
   Student-t truncated to [ln t', ln T] (the consistency loss), and weights them

     L = E_{t > t'}[ w d(f_theta(x_t, t), sg f_trunc(x_r, r)) ]
         + lambda_b E_{t = t'}[ w d(f_theta(x_t', t'), sg f_1(x_r, r)) ],

   with ECT's pair (x_t = x0 + t z, x_r = x0 + r z, same z), mapping function r(t), distance
   d = sqrt(||.||^2 + c^2) - c and weighting w = 1 / (t - r)
   (:func:`fastgen.objectives.ect.pair_loss`);
   r < t' picks the frozen f_1 as the target, which is how the boundary condition enters.

The r(t) schedule continues stage 1's: stage a = ``start_stage`` + floor(step / d), its ratio
1 - q^-(a + 1) capped at ``ratio_limit`` (the official stage 2 resumes at stage 1's last tick).
Sampling as ECT's: f_trunc(sigma_max z, sigma_max), then re-noising to each of
``intermediate_sigmas`` (0.821 for CIFAR-10, below t' = 1: that step is f_1's).

Defaults: the official CIFAR-10 stage-2 script (README of NVlabs/TCM): t' = 1, ln t ~ Student-t
(mean 0, scale 0.2, df 0.01) truncated to [ln 1, ln 80], rho = 0.25, lambda_b = 0.1, q = 2,
d = 25k iterations, ratio limit 0.999, c = 1e-8.

The formulas are named, not cited by equation number (the numbers were not checked against the
paper's PDF); each was checked against the official code (training/loss.py, networks_tcm.py,
ct_training_loop.py, README.md).

Differences from the official code: the boundary split is a fixed number of examples per batch
(round(rho B)), as the official random permutation; the Student-t is drawn by inverting its CDF
tabulated on a grid (the official: scipy's truncated sampler); f_1's dropout is off (the
official runs it in the same train mode as the student); fastgen's stage-1 model is ECT with
EDM's preconditioning (the official's ECMPrecond, also EDM's in training); Adam instead of RAdam.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import samplers
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, consistency, ect

_GRID_POINTS = 8193


def truncated_log_student_t(rng, shape, *, mean: float, scale: float, df: float, low: float,
                            high: float):
  """t with ln t = mean + scale X, X ~ Student-t(df) truncated to ln t in [ln low, ln high],
  by inverting the truncated CDF tabulated on ``_GRID_POINTS`` points (trapezoid rule on the
  density (1 + x^2 / df)^(-(df + 1) / 2))."""
  x = jnp.linspace((math.log(low) - mean) / scale, (math.log(high) - mean) / scale, _GRID_POINTS)
  density = (1.0 + x**2 / df) ** (-(df + 1.0) / 2.0)
  cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (density[1:] + density[:-1]) *
                                                  jnp.diff(x))])
  u = jax.random.uniform(rng, shape) * cdf[-1]
  return jnp.clip(jnp.exp(mean + scale * jnp.interp(u, cdf, x)), low, high)


def truncated_fn(student_fn, boundary_fn, transition_sigma: float):
  """f_trunc(x, sigma) = student where sigma >= t', else the boundary (stage-1) model."""
  def f(x, sigma):
    use_student = jnp.reshape(sigma >= transition_sigma, (-1,) + (1,) * (x.ndim - 1))
    return jnp.where(use_student, student_fn(x, sigma), boundary_fn(x, sigma))
  return f


@dataclasses.dataclass(frozen=True)
class TCM(base.Objective):
  """TCM stage 2; group 'student' (from the stage-1 model's weights), ``teacher`` the frozen
  stage-1 consistency model f_1 (a fastgen workdir of the ECT rule,
  ``teacher.kind='checkpoint'``)."""
  denoiser: Denoiser            # config.network: the stage-2 consistency function f_theta
  teacher: Any = None           # f_1(params, x, sigma, labels): the stage-1 model
  transition_sigma: float = 1.0  # t'
  p_mean: float = 0.0           # location and scale of ln t's Student-t
  p_std: float = 0.2
  df: float = 0.01
  sigma_max: float = 80.0
  boundary_fraction: float = 0.25  # rho
  boundary_weight: float = 0.1  # lambda_b
  q: float = 2.0
  k: float = 8.0
  b: float = 1.0
  stage_steps: int = 25_000     # d
  start_stage: int = 0          # stage 1's last stage a (stage 2 continues its schedule)
  ratio_limit: float = 0.999
  huber_c: float = 1e-8
  intermediate_sigmas: tuple = (0.821,)
  init_from_teacher: bool = True
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if not 0 < self.transition_sigma < self.sigma_max:
      raise ValueError(f'objective.transition_sigma (t\') must be in (0, sigma_max = '
                       f'{self.sigma_max}), not {self.transition_sigma}')
    if not 0 <= self.boundary_fraction < 1:
      raise ValueError(f'objective.boundary_fraction must be in [0, 1), not '
                       f'{self.boundary_fraction}')
    if self.df <= 0 or self.p_std <= 0:
      raise ValueError(f'objective.df and objective.p_std must be positive, not {self.df}, '
                       f'{self.p_std}')
    if self.stage_steps < 1:
      raise ValueError(f'objective.stage_steps must be a positive number of steps, not '
                       f'{self.stage_steps}')
    if not 0 < self.ratio_limit <= 1:
      raise ValueError(f'objective.ratio_limit must be in (0, 1], not {self.ratio_limit}')

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.denoiser, batch['label'])

  def _boundary_fn(self, teacher_params, labels):
    labels = denoiser_lib.conditioning_labels(self.teacher, labels)
    return lambda x, sigma: self.teacher(teacher_params, x, sigma, labels)

  def init(self, rng, batch, teacher_params):
    return {'student': consistency.init_student(self.denoiser.init, rng, batch['x'],
                                                self._labels(batch), teacher_params,
                                                self.init_from_teacher)}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params
    key_t, key_z, key_dropout = jax.random.split(rng, 3)
    x0, labels = batch['x'], self._labels(batch)
    num = x0.shape[0]
    num_boundary = round(self.boundary_fraction * num)
    if num_boundary >= num:
      raise ValueError(f'objective.boundary_fraction={self.boundary_fraction} leaves no example of '
                       f'the batch of {num} for the consistency loss')
    stage = ect.stage_of(step, self.stage_steps, self.start_stage)
    t = truncated_log_student_t(key_t, (num,), mean=self.p_mean, scale=self.p_std, df=self.df,
                                low=self.transition_sigma, high=self.sigma_max)
    is_boundary = jnp.arange(num) < num_boundary
    t = jnp.where(is_boundary, self.transition_sigma, t)
    r = ect.mapping_r(t, stage, q=self.q, k=self.k, b=self.b, ratio_limit=self.ratio_limit)
    student_fn = lambda x, sigma: self.denoiser(params['student'], x, sigma, labels, train=True,
                                                rng=key_dropout)
    target_fn = truncated_fn(student_fn, self._boundary_fn(teacher_params, batch['label']),
                             self.transition_sigma)
    per_example = ect.pair_loss(student_fn, target_fn, x0, jax.random.normal(key_z, x0.shape), t,
                                r, self.huber_c)
    consistency_loss = jnp.sum(jnp.where(is_boundary, 0.0, per_example)) / (num - num_boundary)
    boundary_loss = (jnp.sum(jnp.where(is_boundary, per_example, 0.0)) / num_boundary
                     if num_boundary else jnp.float32(0.0))
    loss = consistency_loss + self.boundary_weight * boundary_loss
    return loss, {'loss': loss, 'consistency_loss': consistency_loss,
                  'boundary_loss': boundary_loss, 'stage': stage.astype(jnp.float32),
                  'ratio': ect.mapping_ratio(stage, self.q, self.ratio_limit)}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    if num_steps - 1 > len(self.intermediate_sigmas):
      raise ValueError(f'{num_steps}-step sampling needs {num_steps - 1} objective.'
                       f'intermediate_sigmas; got {self.intermediate_sigmas}')
    student_labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    f = truncated_fn(lambda x, sigma: self.denoiser(params['student'], x, sigma, student_labels),
                     self._boundary_fn(teacher_params, labels), self.transition_sigma)
    return samplers.multistep_sample(
        f, rng, shape, (self.sigma_max,) + tuple(self.intermediate_sigmas[:num_steps - 1]))
