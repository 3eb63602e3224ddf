"""Score identity Distillation (SiD; Zhou et al. 2024, "Score identity Distillation: Exponentially
Fast Distillation of Pretrained Diffusion Models for One-Step Generation", ICML 2024, §4 and
Algorithm 1; official code: github.com/mingyuanzhou/SiD, ``training/sid_loss.py``), and SiDA
(Zhou et al. 2025, ICLR 2025, §3; official ``sida/sida_loss.py``) as its GAN option.

A data-free one-step generator x_g = G_theta(z) = D_theta(sigma_init z, sigma_init). Groups, in
order: ``'fake_score'`` f_psi, the EDM denoising loss on stop-gradient generator samples
(:mod:`fastgen.objectives.fake_score`) drawn with the generator in inference mode (dropout off,
as the official loop; ``fake_score_samples_in_train_mode``: dropout on, the digits preset's
choice, measured in configs/sid.py), and ``'generator'`` (dropout on), whose per-example loss at
x_t = x_g + sigma eps (the paper's alpha-fused identity loss, alpha = 1.2) is

  L_theta = [ (f_phi - f_psi)^T (f_phi - x_g) - alpha ||f_phi - f_psi||^2 ] / w,
  w = sg( mean_d |x_g - f_phi(x_t, sigma)| ),

f_phi the teacher, t ~ U[u_min, u_max] on EDM's continuous sigma grid (official: U[0, tmax / 1000]).
SiDA (``gan_generator_weight``, ``gan_discriminator_weight`` > 0) adds a GAN term whose
discriminator is the fake score's feature mean, trained on real data.

Differences from the official code:
* no fp16 loss scale (x100) and the fake-score loss averaged, not summed, over dimensions (Adam
  is invariant to both up to its eps);
* class labels drawn uniformly, not read from the data set;
* SiDA: BCE per example, not the batch mean before dividing by w; generated samples get uniform
  labels, not the real batch's;
* k > 1 sampling steps are fastgen's extension (re-noise, apply G).

Derivation, SiDA's loss in the official units, initialisation: docs/rules/sid.md.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, fake_score


def sid_normaliser(x_g, f_real):
  """w = sg(max(mean_d |x_g - f_phi(x_t, sigma)|, 1e-5)), shaped [B, 1, ...] (DMD's omega(t))."""
  axes = tuple(range(1, x_g.ndim))
  return jax.lax.stop_gradient(
      jnp.clip(jnp.mean(jnp.abs(x_g - f_real), axis=axes, keepdims=True), 1e-5))


def generator_loss(f_real, f_fake, x_g, alpha):
  """Per-example SiD generator loss, summed over dimensions:
  [(f_phi - f_psi)^T (f_phi - x_g) - alpha ||f_phi - f_psi||^2] / sg(mean_d |x_g - f_phi|)."""
  diff = f_real - f_fake
  return jnp.sum(diff * ((f_real - x_g) - alpha * diff) / sid_normaliser(x_g, f_real),
                 axis=tuple(range(1, x_g.ndim)))


@dataclasses.dataclass(frozen=True)
class SiD(fake_score.OneStepGenerator, base.Objective):
  """One-step generator distilled by SiD (SiDA with the GAN weights); groups 'fake_score' then
  'generator'."""
  denoiser: Denoiser            # architecture of both the generator and the fake score
  teacher: Any                  # f_phi: teacher(teacher_params, x, sigma, labels) -> x0_hat
  alpha: float = 1.2
  sigma_init: float = 2.5        # the generator's input noise level
  u_min: float = 0.0            # the generator loss's noise levels, as fractions of the grid:
  u_max: float = 0.8            # the official t ~ U[0, tmax / 1000] with tmax = 800
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  p_mean: float = -1.2          # fake-score EDM loss noise distribution
  p_std: float = 1.2
  init_from_teacher: bool = True
  fake_score_samples_in_train_mode: bool = False  # True: dropout on for the fake score's samples
  gan_generator_weight: float = 0.0      # SiDA's lambda_G (0: plain SiD)
  gan_discriminator_weight: float = 0.0  # SiDA's lambda_D
  groups = ('fake_score', 'generator')
  network_group = 'generator'

  def __post_init__(self):
    fake_score.check_adversarial_weights(self.gan_generator_weight, self.gan_discriminator_weight)
    fake_score.check_grid_fractions(self.u_min, self.u_max)

  @property
  def adversarial(self) -> bool:
    return self.gan_generator_weight > 0

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    shape = batch['x'].shape
    x_g, labels, key_loss = self._samples(group, params['generator'], shape, rng)
    if group == 'fake_score':
      real = batch['x'] if self.adversarial else None
      real_labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
      denoising, discriminator, sigma = fake_score.fake_score_losses(
          self.denoiser, params['fake_score'], x_g, labels, key_loss,
          sample_sigma=lambda key, shape: diffusion.sample_lognormal_sigma(
              key, shape, self.p_mean, self.p_std), x_real=real, real_labels=real_labels)
      loss = jnp.mean(denoising)
      metrics = {}
      if self.adversarial:  # SiDA: lambda_D lambda(sigma) (BCE_real + BCE_fake) / (2 D)
        dims = math.prod(shape[1:])
        weight = diffusion.edm_loss_weight(sigma, self.denoiser.sigma_data) / (2 * dims)
        metrics = {'denoising_loss': loss, 'discriminator_loss': jnp.mean(discriminator)}
        loss = loss + self.gan_discriminator_weight * jnp.mean(weight * discriminator)
      return loss, {'loss': loss, **metrics}
    key_sigma, key_eps = jax.random.split(key_loss)
    sigma = diffusion.sample_karras_sigma(key_sigma, shape[:1], self.u_min, self.u_max,
                                          self.sigma_min, self.sigma_max, self.rho)
    x_t = diffusion.add_noise(key_eps, x_g, sigma)
    teacher_labels = denoiser_lib.conditioning_labels(self.teacher, labels)
    f_real = self.teacher(teacher_params, x_t, sigma, teacher_labels)
    if self.adversarial:
      f_fake, features = self.denoiser.with_features(params['fake_score'], x_t, sigma, labels)
    else:
      f_fake = self.denoiser(params['fake_score'], x_t, sigma, labels)
    per_example = generator_loss(f_real, f_fake, x_g, self.alpha)
    metrics = {}
    if self.adversarial:  # SiDA: lambda_G D BCE(G) / w, w the SiD normaliser
      logits = jnp.clip(fake_score.discriminator_logits(features), -10.0, 10.0)
      adversarial = fake_score.generator_adversarial_loss(logits)
      metrics['adversarial_loss'] = jnp.mean(adversarial)
      per_example = per_example + self.gan_generator_weight * math.prod(shape[1:]) * (
          adversarial / sid_normaliser(x_g, f_real)[:, 0])
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'score_gap': fake_score.score_gap(f_real, f_fake), **metrics}
