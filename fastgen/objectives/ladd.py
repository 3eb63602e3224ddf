"""Latent Adversarial Diffusion Distillation, LADD (Sauer et al. 2024, "Fast High-Resolution Image
Synthesis with Latent Adversarial Diffusion Distillation", arXiv:2403.12015, §3), with the
distillation term of ADD (Sauer et al. 2023, "Adversarial Diffusion Distillation",
arXiv:2311.17042, §3) as an option.

A few-step student x0_hat = G_theta(x_s, sigma_s) = D_theta(x_s, sigma_s), initialised from the
teacher, is trained adversarially through the FROZEN teacher: generated and "real" samples are
re-noised, x_t = x0 + sigma eps, and the teacher's features F(x_t, sigma) (whatever its network
sows: the MLP trunk, the U-Net bottleneck) feed a small trainable head d_phi. Groups, in order:
``'discriminator'`` (the head only; the teacher is never trained) and ``'generator'``. With the
hinge loss (ADD §3, which LADD keeps; the papers' equation numbers were not checked here):

  L_D = E_x[max(0, 1 - d_phi(F(x_t)))] + E_G[max(0, 1 + d_phi(F(sg(x0_hat)_t)))],   (ADD §3)
  L_G = -E[d_phi(F(x0_hat_t))] + lambda L_distill,                                  (ADD §3)
  L_distill = E[c(t) ||x0_hat - sg(D_teacher(x0_hat_t, sigma))||^2],                (ADD §3)

lambda = ``distillation_weight`` (LADD: 0, the paper finds it unneeded; ADD: 2.5) and c(t) =
alpha_t, ADD's exponential weighting. The re-noising level follows LADD's logit-normal
pi(t; m, s) shifted to high noise (m = s = 1, §3): in rectified-flow time of unit-variance data,
logit(t) ~ N(m, s^2); as fastgen's sigma = sigma_data t / (1 - t), ln(sigma / sigma_data) ~
N(m, s^2), and alpha_t = 1 / sqrt(1 + (sigma / sigma_data)^2). The "real" samples are
``batch['x']``: LADD's synthetic data when the config trains on the teacher's ODE couplings
(``data.name='couplings'``), the data set otherwise (ADD).

Differences from the papers:
* one two-layer dense head (:func:`fastgen.objectives.fake_score.init_head`) on the feature map
  the teacher's network sows (MLP trunk, U-Net bottleneck), or with ``head_per_level`` one on
  each level's map (each MLP block, each U-Net encoder resolution), where LADD puts heads after
  every transformer block; the heads are not conditioned on the noise level or a text embedding
  (the features are), and the hinge losses average over the heads;
* real and generated samples are re-noised at independent levels and noises;
* no R1 penalty (ADD: gamma = 1e-5); one optimizer for both groups, the head's updates scaled
  by ``head_lr_multiplier`` (LADD publishes no optimizer settings), both updated every step
  unless ``discriminator_updates_per_generator_update`` N > 1: then the generator trains after
  every N head updates (DMD2's two time-scale rule; LADD: N = 1);
* the student's levels are the first k points of a (k + 1)-point Karras grid from
  ``sigma_init``, drawn uniformly; above the first, its input is the batch re-noised (ADD's
  x_s = alpha_s x0 + sigma_s eps), at the first pure noise sigma_init z; LADD's four SD3
  timesteps and their probabilities are not used;
* the distillation term uses the adversarial term's re-noised sample and teacher call.

Derivation and options: docs/rules/ladd.md.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, consistency, fake_score


def hinge_discriminator_loss(logits_real, logits_fake):
  """Per-example hinge loss of the discriminator (ADD §3, without R1; Lim & Ye 2017):
  mean_pos [max(0, 1 - l_real) + max(0, 1 + l_fake)]. logits: [B, positions]."""
  return (jnp.mean(jax.nn.relu(1.0 - logits_real), axis=-1) +
          jnp.mean(jax.nn.relu(1.0 + logits_fake), axis=-1))


def hinge_generator_loss(logits_fake):
  """Per-example hinge generator loss (ADD §3): -mean_pos l_fake."""
  return -jnp.mean(logits_fake, axis=-1)


def sample_renoise_sigma(rng, shape, logit_mean, logit_std, sigma_data):
  """LADD's logit-normal pi(t; m, s) of flow time t for unit-variance data, as an EDM level:
  sigma = sigma_data t / (1 - t) = sigma_data exp(logit t), logit t ~ N(m, s^2)."""
  return sigma_data * diffusion.sample_lognormal_sigma(rng, shape, logit_mean, logit_std)


def distillation_loss(x0_hat, teacher_x0, sigma, sigma_data):
  """Per-example ADD distillation loss (ADD §3, with d = squared L2, mean over dimensions, and
  the exponential weighting c(t) = alpha_t = 1 / sqrt(1 + (sigma / sigma_data)^2)):
  c(t) mean_d ||x0_hat - sg(teacher_x0)||^2."""
  weight = 1.0 / jnp.sqrt(1.0 + (sigma / sigma_data) ** 2)
  return weight * jnp.mean((x0_hat - jax.lax.stop_gradient(teacher_x0)) ** 2,
                           axis=tuple(range(1, x0_hat.ndim)))


@dataclasses.dataclass(frozen=True)
class LADD(base.Objective):
  """Adversarial distillation on the frozen teacher's features; groups 'discriminator' (a head)
  then 'generator'."""
  denoiser: Denoiser            # the student's network (the teacher's, for init_from_teacher)
  teacher: Any                  # a network teacher: teacher.with_features(params, x, sigma, labels)
  student_steps: int = 1
  sigma_init: float = 80.0      # the student's first (pure-noise) level
  sigma_min: float = 0.002
  rho: float = 7.0
  logit_mean: float = 1.0       # LADD's pi(t; m, s): m = 1, s = 1 (shifted to high noise)
  logit_std: float = 1.0
  distillation_weight: float = 0.0  # ADD's lambda (2.5); LADD: 0
  discriminator_updates_per_generator_update: int = 1  # two time-scale ratio; LADD: 1
  head_hidden: int = 256
  head_per_level: bool = False  # one head on each level's features (LADD: every block); else one
  head_lr_multiplier: float = 1.0  # the heads' learning rate relative to optim.lr
  init_from_teacher: bool = True
  groups = ('discriminator', 'generator')
  network_group = 'generator'

  def __post_init__(self):
    if not callable(getattr(self.teacher, 'with_features', None)):
      raise ValueError('LADD reads the teacher network\'s features: use a network teacher '
                       '(teacher.kind="checkpoint"), not a closed-form one')
    if self.student_steps < 1 or self.discriminator_updates_per_generator_update < 1:
      raise ValueError('objective.student_steps and objective.discriminator_updates_per_'
                       f'generator_update must be >= 1, got {self.student_steps} and '
                       f'{self.discriminator_updates_per_generator_update}')
    if self.logit_std <= 0 or self.distillation_weight < 0 or self.head_lr_multiplier <= 0:
      raise ValueError(f'objective.logit_std and objective.head_lr_multiplier must be > 0 and '
                       f'objective.distillation_weight >= 0, got {self.logit_std}, '
                       f'{self.head_lr_multiplier} and {self.distillation_weight}')

  def _student_sigmas(self, num_steps: int):
    """sigma_0 = sigma_init > ... > sigma_{k-1}: the first k points of a (k + 1)-point Karras
    grid (EDM Eq. 5) from sigma_init to sigma_min."""
    return samplers.multistep_sigmas(num_steps, self.sigma_min, self.sigma_init, self.rho)

  def _teacher_features(self, teacher_params, x, sigma, labels):
    """(D_teacher(x, sigma), features) from one call of the frozen teacher: the bottleneck, or
    with ``head_per_level`` every level's map (``Denoiser.with_features(levels=True)``)."""
    return self.teacher.with_features(teacher_params, x, sigma,
                                      denoiser_lib.conditioning_labels(self.teacher, labels),
                                      levels=self.head_per_level)

  def _logits(self, head, features):
    """[B, heads]: each head's logit on its features."""
    if not self.head_per_level:
      return fake_score.discriminator_logits(features, head)
    return jnp.concatenate([fake_score.discriminator_logits(f, head[f'level{i}'])
                            for i, f in enumerate(features)], axis=-1)

  def init(self, rng, batch, teacher_params):
    key_g, key_label, key_head = jax.random.split(rng, 3)
    x = batch['x']
    labels = denoiser_lib.uniform_labels(key_label, x.shape[0], self.denoiser.num_classes)
    generator = consistency.init_student(self.denoiser.init, key_g, x, labels, teacher_params,
                                         self.init_from_teacher)
    features = jax.eval_shape(
        lambda p: self._teacher_features(p, x, jnp.ones(x.shape[:1]), labels)[1], teacher_params)
    if self.head_per_level:
      keys = jax.random.split(key_head, len(features))
      head = {f'level{i}': fake_score.init_head(k, f.shape[1:], self.head_hidden)
              for i, (k, f) in enumerate(zip(keys, features))}
    else:
      head = fake_score.init_head(key_head, features.shape[1:], self.head_hidden)
    return {'generator': generator, 'discriminator': head}

  def learning_rate_multiplier(self, group):
    return self.head_lr_multiplier if group == 'discriminator' else 1.0

  def trains(self, group, step):
    """Two time-scale updates (as DMD2's): the generator trains after every N head updates."""
    return base.generator_trains_every(group, step,
                                       self.discriminator_updates_per_generator_update)

  def _generate(self, generator_params, x_data, labels, rng, *, train):
    """x0_hat = D_theta(x_s, sigma_s) at a student level drawn uniformly per example: pure noise
    sigma_0 z at the first, the data re-noised x_data + sigma_i z at the others (ADD §3.1)."""
    key_z, key_i, key_dropout = jax.random.split(rng, 3)
    sigmas = self._student_sigmas(self.student_steps)
    i = jax.random.randint(key_i, x_data.shape[:1], 0, self.student_steps)
    sigma = sigmas[i]
    noise = diffusion.expand_like(sigma, x_data) * jax.random.normal(key_z, x_data.shape)
    x_s = jnp.where(diffusion.expand_like(i == 0, x_data), noise, x_data + noise)
    return self.denoiser(generator_params, x_s, sigma, labels, train=train, rng=key_dropout)

  def _renoise(self, rng, x0):
    """(x0 + sigma eps, sigma), sigma from LADD's logit-normal (:func:`sample_renoise_sigma`)."""
    key_sigma, key_eps = jax.random.split(rng)
    sigma = sample_renoise_sigma(key_sigma, x0.shape[:1], self.logit_mean, self.logit_std,
                                 self.denoiser.sigma_data)
    return diffusion.add_noise(key_eps, x0, sigma), sigma

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    key_gen, key_renoise = jax.random.split(rng)
    x_real = batch['x']
    labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
    x0_hat = self._generate(params['generator'], x_real, labels, key_gen,
                            train=group == 'generator')
    head = params['discriminator']
    if group == 'discriminator':
      both = jnp.concatenate([jax.lax.stop_gradient(x0_hat), x_real])
      both_labels = None if labels is None else jnp.concatenate([labels, labels])
      x_t, sigma = self._renoise(key_renoise, both)
      features = self._teacher_features(teacher_params, x_t, sigma, both_labels)[1]
      logits_fake, logits_real = jnp.split(self._logits(head, features), 2)
      loss = jnp.mean(hinge_discriminator_loss(logits_real, logits_fake))
      return loss, {'loss': loss, 'logit_real': jnp.mean(logits_real),
                    'logit_fake': jnp.mean(logits_fake)}
    x_t, sigma = self._renoise(key_renoise, x0_hat)
    teacher_x0, features = self._teacher_features(teacher_params, x_t, sigma, labels)
    adversarial = jnp.mean(hinge_generator_loss(self._logits(head, features)))
    loss, metrics = adversarial, {'adversarial_loss': adversarial}
    if self.distillation_weight > 0:
      distill = jnp.mean(distillation_loss(x0_hat, teacher_x0, sigma, self.denoiser.sigma_data))
      metrics['distillation_loss'] = distill
      loss = loss + self.distillation_weight * distill
    return loss, {'loss': loss, **metrics}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` student steps on :meth:`_student_sigmas`: x = G(sigma_0 z), then re-noise to
    sigma_i and apply G (ADD's and LADD's multi-step sampling)."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self.denoiser(params['generator'], x, sigma, labels), rng, shape,
        self._student_sigmas(num_steps))
