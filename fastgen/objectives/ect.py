"""Easy Consistency Tuning, ECT (Geng et al. 2024, "Consistency Models Made Easy", arXiv:2406.14548,
ICLR 2025; official code github.com/locuslab/ect): a consistency model tuned from a pretrained
diffusion model.

The student is the teacher's own denoiser D_theta(x, t) (EDM preconditioning, EDM Eq. 7) used as
the consistency function f_theta(x, t) = D_theta(x, t): c_skip(0) = 1 and c_out(0) = 0 give the
boundary condition f(x, 0) = x exactly, and it starts from the teacher's weights (the paper's
argument that diffusion models are a special case of consistency models). The loss compares two
points of one noising path, x_t = x0 + t z and x_r = x0 + r z with the same z, 0 <= r < t (the
paper's discretised differential consistency condition),

  L = E_{x0, z, t} [ w(t, r) d(f_theta(x_t, t), sg f_theta(x_r, r)) ],      f(x_0, 0) := x0,

* t ~ lognormal: ln t ~ N(P_mean, P_std^2) (EDM's / iCT's noise distribution);
* the mapping function p(r | t, iteration) ("dt" shrinks with the training stage):

    r(t) = max(t (1 - q^-(a + 1) n(t)), 0),   n(t) = 1 + k sigmoid(-b t),   a = floor(step / d),

  a the training stage (d iterations each): at stage 0 (q = 2, k = 8, b = 1) r = 0 for
  t <= ln 7 = 1.95, where the target is the data x0 itself, so the first stage is mostly the
  diffusion (denoising) loss the teacher was trained with; at stage 1 r = 0 for t <= ln(5/3);
  each stage divides t - r by q, approaching the continuous-time consistency condition;
* d(a, b) = sqrt(||a - b||^2 + c^2) - c (the L2 norm for c = 0, which the paper writes as the
  squared loss with the adaptive weight 1 / ||.||, its p = 0.5; pseudo-Huber for c > 0);
* w(t, r) = 1 / (t - r) (the weighting that keeps the loss of the differential consistency
  condition finite as dt -> 0, as iCT's lambda);
* the same dropout mask for both evaluations; no target EMA (stop-gradient of the student).

Sampling: x = f(sigma_max z, sigma_max), then for each intermediate noise level s (2-step
CIFAR-10: s = 0.821) x = f(x + s z, s).

Differences from the official code (locuslab/ect at 4311059: training/loss.py, networks.py,
run_ecm.sh):
* f is the EDM denoiser at training and at sampling; the official ECMPrecond trains with EDM's
  c_skip, c_out too but samples with Song et al.'s sigma_min = 0.003 shifted ones (a relative change
  of ~4e-5 at sigma_max = 80 and ~0.5% at the 2-step level 0.821);
* ``ratio_limit`` caps 1 - q^-(a + 1) (TCM's stage-1 option; ECT's own runs: no cap, 1.0);
* Adam instead of RAdam; no data augmentation (the official CIFAR-10 run uses none either).

The formulas are named, not cited by equation number (the numbers were not checked against the
paper's PDF); each was checked against the official code (training/loss.py, ct_train.py).
Derivation and the schedule's values: docs/rules/consistency.md.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion, samplers
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, consistency


def stage_of(step, stage_steps: int, start_stage: int = 0):
  """The training stage a = start_stage + floor(step / d) (d = ``stage_steps``)."""
  return start_stage + step // stage_steps


def mapping_ratio(stage, q: float, ratio_limit: float):
  """1 - q^-(a + 1), capped at ``ratio_limit``: the r / t of the constant mapping function."""
  return jnp.minimum(1.0 - jnp.power(q, -(stage + 1.0)), ratio_limit)


def mapping_r(t, stage, *, q: float, k: float, b: float, ratio_limit: float = 1.0):
  """ECT's mapping function: r = max(t - t (1 - ratio) n(t), 0), n(t) = 1 + k sigmoid(-b t),
  ratio = :func:`mapping_ratio` (1 - q^-(a + 1) uncapped)."""
  decay = 1.0 - mapping_ratio(stage, q, ratio_limit)
  return jnp.maximum(t - t * decay * (1.0 + k * jax.nn.sigmoid(-b * t)), 0.0)


def distance(a, b, c: float):
  """Per-example d(a, b) = sqrt(||a - b||^2 + c^2) - c: the L2 norm for c = 0 (ECT's),
  pseudo-Huber for c > 0."""
  return jnp.sqrt(consistency.squared_distance(a, b) + c**2) - c


def pair_loss(online_fn, target_fn, x0, z, t, r, c: float):
  """Per-example (1 / (t - r)) d(f(x0 + t z, t), sg f(x0 + r z, r)), the target x0 itself where
  r = 0 (the boundary condition f(x, 0) = x). ``online_fn`` / ``target_fn(x, sigma)`` close over
  params, labels and one dropout key, so both calls share the mask (ECT: both the student; TCM: the
  target is the truncated model); where r = 0 the target is evaluated at t and not used."""
  expand = lambda s: diffusion.expand_like(s, x0)
  online = online_fn(x0 + expand(t) * z, t)
  r_eval = jnp.where(r > 0, r, t)
  target = jnp.where(expand(r) > 0, target_fn(x0 + expand(r_eval) * z, r_eval), x0)
  return distance(online, jax.lax.stop_gradient(target), c) / (t - r)


def lognormal_sigma(rng, shape, p_mean: float, p_std: float):
  """t with ln t ~ N(P_mean, P_std^2)."""
  return jnp.exp(p_mean + p_std * jax.random.normal(rng, shape))


@dataclasses.dataclass(frozen=True)
class ECT(base.Objective):
  """ECT; group 'student' (the denoiser of ``config.network``, from the teacher's weights).
  ``stage_steps`` is d, the iterations per stage of the mapping function."""
  denoiser: Denoiser            # config.network: the student consistency function f = D_theta
  p_mean: float = -1.1          # CIFAR-10 values (official run_ecm.sh / ct_train.py)
  p_std: float = 2.0
  q: float = 2.0
  k: float = 8.0
  b: float = 1.0
  stage_steps: int = 25_000     # d: 250 ticks of 12.8 kimg at batch 128
  ratio_limit: float = 1.0      # cap of 1 - q^-(a + 1); 1: none (ECT's)
  huber_c: float = 0.0          # c of d; 0: the L2 norm (ECT's CIFAR-10 setting)
  sigma_max: float = 80.0
  intermediate_sigmas: tuple = (0.821,)
  init_from_teacher: bool = True
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if self.stage_steps < 1:
      raise ValueError(f'objective.stage_steps must be a positive number of steps, not '
                       f'{self.stage_steps}')
    if self.q <= 1:
      raise ValueError(f'objective.q must be > 1 (t - r shrinks by 1/q per stage), not {self.q}')
    if not 0 < self.ratio_limit <= 1:
      raise ValueError(f'objective.ratio_limit must be in (0, 1], not {self.ratio_limit}')
    if self.huber_c < 0:
      raise ValueError(f'objective.huber_c must be >= 0, not {self.huber_c}')

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.denoiser, batch['label'])

  def init(self, rng, batch, teacher_params):
    return {'student': consistency.init_student(self.denoiser.init, rng, batch['x'],
                                                self._labels(batch), teacher_params,
                                                self.init_from_teacher)}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params
    key_t, key_z, key_dropout = jax.random.split(rng, 3)
    x0, labels = batch['x'], self._labels(batch)
    stage = stage_of(step, self.stage_steps)
    t = lognormal_sigma(key_t, x0.shape[:1], self.p_mean, self.p_std)
    r = mapping_r(t, stage, q=self.q, k=self.k, b=self.b, ratio_limit=self.ratio_limit)
    f = lambda x, sigma: self.denoiser(params['student'], x, sigma, labels, train=True,
                                       rng=key_dropout)
    per_example = pair_loss(f, f, x0, jax.random.normal(key_z, x0.shape), t, r, self.huber_c)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'stage': stage.astype(jnp.float32),
                  'ratio': mapping_ratio(stage, self.q, self.ratio_limit),
                  'boundary_fraction': jnp.mean((r == 0).astype(jnp.float32))}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    del teacher_params
    if num_steps - 1 > len(self.intermediate_sigmas):
      raise ValueError(f'{num_steps}-step sampling needs {num_steps - 1} objective.'
                       f'intermediate_sigmas; got {self.intermediate_sigmas}')
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self.denoiser(params['student'], x, sigma, labels), rng, shape,
        (self.sigma_max,) + tuple(self.intermediate_sigmas[:num_steps - 1]))
