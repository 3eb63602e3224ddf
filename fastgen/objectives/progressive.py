"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models", ICLR 2022, Algorithm 2; official code: google-research's
``diffusion_distillation``), in EDM's sigma language (alpha = 1, z = x).

Round r trains a student sampling in N_r = initial_steps / 2^r DDIM steps to match two DDIM
steps of its teacher (round 0: the real teacher; later: the frozen student of round r - 1, the
entry ``'previous'``, copied by ``set_frozen``). On EDM's grid read continuously (Eq. 5), the
teacher's two steps from x = x0 + sigma z to sigma'' give x'', and the student's target and loss
are (Algorithm 2 with alpha = 1; §4's truncated SNR weighting)

  x~ = (x'' - (sigma''/sigma) x) / (1 - sigma''/sigma),
  loss = max(1 / sigma^2, 1) ||x~ - D(x, sigma)||^2.

Group ``'student'``; frozen ``'previous'`` and ``'round'``. Sampling: DDIM steps on the grid
(``num_steps = 0``: the current round's N_r).

Each round starts with the learning rate back at its peak (``optim.decay_per_round``, the
paper's per-round linear anneal) and a fresh Adam state (``optim.restart_per_round``; the official
notebook builds a new optimizer per round); every PD preset sets both.

Differences from the official code: EDM's variance-exploding sigma grid and preconditioning (an
x-prediction, SNR = 1 / sigma^2) instead of the paper's variance-preserving cosine schedule.

The rounds, the grid and the target in full: docs/rules/progressive.md.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, consistency


def grid_sigma(u, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """The sampling walk's sigma at u in [0, 1]: EDM Eq. 5 read continuously from sigma_max
  (u = 0) to sigma_min (u -> 1), :func:`fastgen.diffusion.karras_sigma` (1 - u), and 0 at u = 1."""
  return jnp.where(u >= 1.0, 0.0,
                   diffusion.karras_sigma(1.0 - jnp.minimum(u, 1.0), sigma_min, sigma_max, rho))


def student_target(x, x_two_steps, sigma, sigma_next):
  """Salimans & Ho 2022, Algorithm 2 with alpha = 1: the x0_hat whose one DDIM step from sigma to
  sigma_next lands on the teacher's two-step result x'': x~ = (x'' - r x) / (1 - r),
  r = sigma_next / sigma."""
  ratio = diffusion.expand_like(sigma_next / sigma, x)
  return (x_two_steps - ratio * x) / (1.0 - ratio)


def truncated_snr_weight(sigma):
  """Salimans & Ho 2022, §4, "truncated SNR": max(SNR, 1), SNR = alpha^2 / sigma^2 = sigma^-2."""
  return jnp.maximum(1.0 / sigma**2, 1.0)


@dataclasses.dataclass(frozen=True)
class ProgressiveDistillation(base.Objective):
  """Rounds of step halving, initial_steps -> ... -> final_steps; group 'student', frozen
  'previous' (the last round's student) and 'round'."""
  denoiser: Denoiser
  teacher: Any                  # teacher(teacher_params, x, sigma, labels) -> x0_hat
  initial_steps: int = 8        # N_0, the round-0 student's steps (its teacher takes 2 N_0)
  final_steps: int = 1
  steps_per_round: int = 1000
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  init_from_teacher: bool = True
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    ratio = self.initial_steps // max(self.final_steps, 1)
    power_of_two = ratio >= 1 and not ratio & (ratio - 1)
    if self.final_steps < 1 or ratio * self.final_steps != self.initial_steps or not power_of_two:
      raise ValueError(f'objective.initial_steps={self.initial_steps} must be final_steps='
                       f'{self.final_steps} times a power of two')

  @property
  def num_rounds(self) -> int:
    return int(math.log2(self.initial_steps // self.final_steps)) + 1

  @property
  def round_ends(self) -> tuple[int, ...]:
    return tuple((r + 1) * self.steps_per_round for r in range(self.num_rounds))

  def _round_at(self, step):
    """The round that training step ``step`` (0-based) belongs to."""
    return jnp.minimum(step // self.steps_per_round, self.num_rounds - 1).astype(jnp.int32)

  def _student_steps(self, round_index):
    """N_r = initial_steps / 2^r."""
    return self.initial_steps // 2 ** jnp.asarray(round_index, jnp.int32)

  def init(self, rng, batch, teacher_params):
    labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
    student = consistency.init_student(self.denoiser.init, rng, batch['x'], labels,
                                       teacher_params, self.init_from_teacher)
    return {'student': student, 'previous': jax.tree.map(jnp.copy, student),
            'round': jnp.zeros((), jnp.int32)}

  def set_frozen(self, params, ema_params, step):
    """At the first step of round r > 0: previous <- student (Algorithm 2's eta_hat <- eta)."""
    del ema_params
    round_index = self._round_at(step)
    previous = jax.lax.cond(round_index != params['round'], lambda: params['student'],
                            lambda: params['previous'])
    return {**params, 'previous': previous, 'round': round_index}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_i, key_z, key_dropout = jax.random.split(rng, 3)
    x0 = batch['x']
    labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
    teacher_labels = denoiser_lib.conditioning_labels(self.teacher, batch['label'])
    num_steps = self._student_steps(params['round'])
    i = jax.random.randint(key_i, x0.shape[:1], 0, num_steps)
    sigma_at = lambda k: grid_sigma(k / num_steps, self.sigma_min, self.sigma_max, self.rho)
    sigma, sigma_mid, sigma_next = sigma_at(i), sigma_at(i + 0.5), sigma_at(i + 1.0)
    x = diffusion.add_noise(key_z, x0, sigma)

    def teacher_fn(x, s):
      return jax.lax.cond(params['round'] == 0,
                          lambda: self.teacher(teacher_params, x, s, teacher_labels),
                          lambda: self.denoiser(params['previous'], x, s, labels))

    x_mid = samplers.ddim_step(x, teacher_fn(x, sigma), sigma, sigma_mid)
    x_two = samplers.ddim_step(x_mid, teacher_fn(x_mid, sigma_mid), sigma_mid, sigma_next)
    target = jax.lax.stop_gradient(student_target(x, x_two, sigma, sigma_next))
    x0_hat = self.denoiser(params['student'], x, sigma, labels, train=True, rng=key_dropout)
    squared = jnp.mean((x0_hat - target) ** 2, axis=tuple(range(1, x0.ndim)))
    loss = jnp.mean(truncated_snr_weight(sigma) * squared)
    return loss, {'loss': loss, 'student_steps': num_steps.astype(jnp.float32)}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` DDIM steps of the student on the grid (0: the current round's N_r)."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    steps = num_steps if num_steps > 0 else self._student_steps(params['round'])
    sigma_at = lambda k: grid_sigma(k / steps, self.sigma_min, self.sigma_max, self.rho)

    def step(k, x):
      sigma = sigma_at(k)
      x0_hat = self.denoiser(params['student'], x, sigma, labels)
      return samplers.ddim_step(x, x0_hat, sigma, sigma_at(k + 1))

    return jax.lax.fori_loop(0, steps, step, self.sigma_max * jax.random.normal(rng, shape))
