"""Score Implicit Matching (SIM; Luo et al. 2024, "One-Step Diffusion Distillation through Score
Implicit Matching", NeurIPS 2024, §3; official release github.com/maple-research-lab/SIM holds
only inference code), with the paper's pseudo-Huber distance function.

A data-free one-step generator x_g = G_theta(z) = D_theta(sigma_init z, sigma_init) is trained to
minimise a score divergence (SIM §3.1)

  D(theta) = int w(t) E_{x_t ~ q_t} d(y_t) dt,   y_t = s_p(x_t) - s_q(x_t),

s_p the teacher's score, s_q the generator's, with the pseudo-Huber distance (SIM §3.3)
d(y) = sqrt(||y||^2 + c^2) - c. Its gradient needs no gradient of the intractable s_q (the
score-gradient theorem, SIM §3.2): with the fake score f_psi in place of s_q, frozen
networks, and x_t = x_g + sigma eps differentiated pathwise,

  grad D = grad E[ d(y_t) + d'(y_t)^T (s_q(x_t) - grad_{x_t} log q_t(x_t | x_g)) ],

which in denoiser units (s = (D - x_t) / sigma^2; the distance read on sigma^2 y, a time-dependent
scale of d) is the per-example generator loss

  L_theta = [ d(Delta) + d'(Delta)^T (f_psi - x_g) ] / w,   Delta = f_phi(x_t) - f_psi(x_t),
  d'(Delta) = Delta / sqrt(||Delta||^2 + c^2),   w = sg(mean_d |x_g - f_phi(x_t)|)

(SiD's normaliser as the weighting w(t)). Groups, in order: ``'fake_score'``, the EDM denoising
loss on stop-gradient generator samples (:mod:`fastgen.objectives.fake_score`, as SiD), then
``'generator'``: SIM's alternating updates. Noise levels as SiD's (fastgen's
choice): sigma on EDM's continuous grid at u ~ U[u_min, u_max].

Differences from the paper: the paper's printed loss and its CIFAR-10 constant c were not
consulted in this implementation (no training code is released); the loss above is derived here
(docs/rules/sim.md) and tests/objectives/test_sim.py checks its gradient against the exact
divergence gradient on a Gaussian, so its sign and terms are those of the theorem; ``huber_c``
is an option (default 1, on the sum over dimensions of denoiser differences).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, fake_score, sid


def pseudo_huber(y, c):
  """d(y) = sqrt(||y||^2 + c^2) - c per example (SIM §3.3), y: [B, ...], computed as
  ||y||^2 / (sqrt(||y||^2 + c^2) + c), which keeps float32 precision where ||y|| << c."""
  squared = jnp.sum(y**2, axis=tuple(range(1, y.ndim)))
  return squared / (jnp.sqrt(squared + c**2) + c)


def score_divergence_surrogate(f_real, f_fake, x_g, c):
  """Per-example d(Delta) + d'(Delta)^T (f_psi - x_g), Delta = f_phi - f_psi, d pseudo-Huber:
  with frozen networks its gradient through x_t and x_g is the score divergence's (SIM §3.2)."""
  axes = tuple(range(1, x_g.ndim))
  delta = f_real - f_fake
  norm = jnp.sqrt(jnp.sum(delta**2, axis=axes, keepdims=True) + c**2)
  return pseudo_huber(delta, c) + jnp.sum(delta / norm * (f_fake - x_g), axis=axes)


@dataclasses.dataclass(frozen=True)
class SIM(fake_score.OneStepGenerator, base.Objective):
  """One-step generator distilled by Score Implicit Matching; groups 'fake_score' then
  'generator'."""
  denoiser: Denoiser            # architecture of both the generator and the fake score
  teacher: Any                  # f_phi: teacher(teacher_params, x, sigma, labels) -> x0_hat
  huber_c: float = 1.0          # c of the pseudo-Huber distance
  sigma_init: float = 2.5       # the generator's input noise level
  u_min: float = 0.0            # the generator loss's noise levels, as fractions of the grid
  u_max: float = 0.8
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  p_mean: float = -1.2          # fake-score EDM loss noise distribution
  p_std: float = 1.2
  init_from_teacher: bool = True
  fake_score_samples_in_train_mode: bool = False  # True: dropout on for the fake score's samples
  groups = ('fake_score', 'generator')
  network_group = 'generator'

  def __post_init__(self):
    if not self.huber_c > 0:
      raise ValueError(f'objective.huber_c={self.huber_c}: the pseudo-Huber constant c must be '
                       '> 0')
    fake_score.check_grid_fractions(self.u_min, self.u_max)

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    shape = batch['x'].shape
    x_g, labels, key_loss = self._samples(group, params['generator'], shape, rng)
    if group == 'fake_score':
      denoising, _, _ = fake_score.fake_score_losses(
          self.denoiser, params['fake_score'], x_g, labels, key_loss,
          sample_sigma=lambda key, shape: diffusion.sample_lognormal_sigma(
              key, shape, self.p_mean, self.p_std))
      loss = jnp.mean(denoising)
      return loss, {'loss': loss}
    key_sigma, key_eps = jax.random.split(key_loss)
    sigma = diffusion.sample_karras_sigma(key_sigma, shape[:1], self.u_min, self.u_max,
                                          self.sigma_min, self.sigma_max, self.rho)
    x_t = diffusion.add_noise(key_eps, x_g, sigma)
    f_real = self.teacher(teacher_params, x_t, sigma,
                          denoiser_lib.conditioning_labels(self.teacher, labels))
    f_fake = self.denoiser(params['fake_score'], x_t, sigma, labels)
    per_example = (score_divergence_surrogate(f_real, f_fake, x_g, self.huber_c) /
                   sid.sid_normaliser(x_g, f_real)[(slice(None),) + (0,) * (x_g.ndim - 1)])
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'score_gap': fake_score.score_gap(f_real, f_fake),
                  'pseudo_huber': jnp.mean(pseudo_huber(f_real - f_fake, self.huber_c))}
