"""Distribution Matching Distillation: DMD (Yin et al. 2024a, "One-step Diffusion with
Distribution Matching Distillation", CVPR 2024, §3 and Algorithm 1) and DMD2 (Yin et al. 2024b,
"Improved Distribution Matching Distillation for Fast Image Synthesis", NeurIPS 2024, §4;
official code: github.com/tianweiy/DMD2, ``main/edm/edm_guidance.py``), with f-distill's
weighting (Xu et al. 2025) as an option.

A generator x_g = G(z) = D_theta(sigma_init z, sigma_init) (DMD2: 1 or ``student_steps`` steps).
Groups, in order: ``'fake_score'`` mu_fake, the EDM denoising loss on stop-gradient generator
samples (:mod:`fastgen.objectives.fake_score`; DMD Eq. 6), plus DMD2's GAN classifier on its
bottleneck (DMD2 Eq. 5); ``'generator'``, the distribution-matching gradient (DMD Eq. 7-8 with
alpha_t = 1) at x_t = x_g + sigma eps, sigma on EDM's continuous grid at u ~ U[u_min, u_max],

  grad_x L_DM = (mu_fake(x_t, sigma) - mu_real(x_t, sigma)) / mean_d |x_g - mu_real(x_t, sigma)|,

applied as L_DM = 0.5 mean_d ||x_g - sg(x_g - grad)||^2, plus DMD's regression on teacher-ODE
pairs (``regression_weight``) or DMD2's non-saturating GAN term (DMD2 Eq. 4). DMD2's two
time-scale rule updates the generator once per ``fake_score_updates_per_generator_update``
steps. The fake score, and the classifier on real and generated samples (each at its own noise
level) for both its loss and the generator's GAN term, see one distribution,
``fake_score_sigma``: by default the official 'karras_grid', sigma on EDM's grid at u ~ U[0, 1]
(DMD2 ``compute_loss_fake`` and ``compute_cls_logits``: t ~ U{0, ..., 999} of its 1000-point
Karras grid), with the EDM weight lambda(sigma) = 1 / sigma^2 + 1 / sigma_data^2.

Differences from the official code:
* squared L2 in place of DMD's and DMD2's LPIPS;
* DMD2's classifier is a two-layer dense head on the flattened bottleneck, not strided convs;
  its logits of generated samples in the fake-score update come from the denoising call (same
  sigma distribution as the official separate call, same noisy sample);
* the Karras grid is read continuously (u ~ U[0, 1], as the DM loss's u ~ U[u_min, u_max]), not
  at the 1000 points; ``fake_score_sigma='lognormal'`` keeps EDM's log-normal (fastgen's former
  default), which puts 1% of the fake score's training above sigma = 5 where the DM loss puts
  42% of its queries;
* classifier-free guidance of the real score only through ``guidance_scale``;
* f-distill's weights are normalised to mean 1 over the batch (fastgen's choice).

Derivation, the multi-step student, TTUR and f-distill: docs/rules/dmd.md.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, fake_score


COUPLING_SIGMA_MAX = 80.0  # where fastgen.couplings starts the teacher ODE (its default)


def distribution_matching_loss(x_g, f_real, f_fake):
  """Per-example DMD loss (DMD Eq. 7-8, official ``compute_distribution_matching_loss``):
  0.5 mean_d ||x_g - sg(x_g - g)||^2 with g = (f_fake - f_real) / sg(mean_d |x_g - f_real|),
  so that its gradient w.r.t. x_g is g / D; non-finite entries of g count as 0."""
  axes = tuple(range(1, x_g.ndim))
  weight = jnp.mean(jnp.abs(x_g - f_real), axis=axes, keepdims=True)
  grad = jax.lax.stop_gradient(jnp.nan_to_num((f_fake - f_real) / weight, nan=0.0, posinf=0.0,
                                               neginf=0.0))
  target = jax.lax.stop_gradient(x_g - grad)
  return 0.5 * jnp.mean((x_g - target) ** 2, axis=axes)


DIVERGENCES = ('reverse_kl', 'forward_kl', 'js')


def f_divergence_weight(logits, divergence: str):
  """f-distill's per-example weight h(r) = f''(r) r^2 (Xu et al. 2025, "One-step Diffusion Models
  with f-Divergence Distribution Matching", §3) at r = exp(mean logit), the density ratio the GAN
  head estimates: 1 (reverse KL, DMD), r (forward KL), sigmoid(logit) (JS); normalised to mean 1
  over the batch (derivation: docs/rules/dmd.md). logits: [B, positions]."""
  logit = jnp.mean(logits, axis=-1)
  if divergence == 'reverse_kl':
    weight = jnp.ones_like(logit)
  elif divergence == 'forward_kl':
    weight = jax.nn.softmax(logit)  # exp(logit), up to the normalisation below
  elif divergence == 'js':
    weight = jax.nn.sigmoid(logit)
  else:
    raise ValueError(f'unknown divergence {divergence!r}; known: {", ".join(DIVERGENCES)}')
  return jax.lax.stop_gradient(weight / jnp.mean(weight))


@dataclasses.dataclass(frozen=True)
class DMD(base.Objective):
  """DMD / DMD2 generator in ``student_steps`` steps; groups 'fake_score' then 'generator'."""
  denoiser: Denoiser            # architecture of the generator and of the fake score
  teacher: Any                  # mu_real: teacher(teacher_params, x, sigma, labels) -> x0_hat
  sigma_init: float = 80.0      # the generator's input noise level (the couplings' sigma_max)
  student_steps: int = 1
  u_min: float = 0.02           # DMD's t range, as fractions of the grid
  u_max: float = 0.98
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  guidance_scale: float = 1.0   # classifier-free guidance of the real score
  regression_weight: float = 0.0       # DMD's lambda_reg (0.25); needs the coupling data set
  gan_generator_weight: float = 0.0    # DMD2's generator GAN weight (ImageNet-64: 3e-3)
  gan_discriminator_weight: float = 0.0  # DMD2's classifier weight (ImageNet-64: 1e-2)
  head_hidden: int = 256
  divergence: str = 'reverse_kl'       # f-distill's weighting (forward_kl, js need the GAN head)
  fake_score_updates_per_generator_update: int = 1  # DMD2's TTUR ratio (ImageNet-64: 5)
  fake_score_sigma: str = 'karras_grid'  # the fake score's and classifier's noise levels
  p_mean: float = -1.2          # fake_score_sigma='lognormal': ln sigma ~ N(p_mean, p_std^2)
  p_std: float = 1.2
  init_from_teacher: bool = True
  groups = ('fake_score', 'generator')
  network_group = 'generator'

  def __post_init__(self):
    if self.student_steps < 1 or self.fake_score_updates_per_generator_update < 1:
      raise ValueError('objective.student_steps and objective.fake_score_updates_per_generator_'
                       f'update must be >= 1, got {self.student_steps} and '
                       f'{self.fake_score_updates_per_generator_update}')
    if self.regression_weight > 0 and self.student_steps > 1:
      raise ValueError('objective.regression_weight > 0 (DMD) trains a one-step generator on '
                       'noise -> teacher-sample pairs: set objective.student_steps=1')
    if self.regression_weight > 0 and self.sigma_init != COUPLING_SIGMA_MAX:
      raise ValueError(f'objective.sigma_init={self.sigma_init}: the regression pairs start their '
                       f'teacher ODE at sigma_max = {COUPLING_SIGMA_MAX} (fastgen.couplings), so '
                       f'the generator must take its noise there too')
    fake_score.check_adversarial_weights(self.gan_generator_weight, self.gan_discriminator_weight)
    if self.divergence not in DIVERGENCES:
      raise ValueError(f'unknown objective.divergence {self.divergence!r}; known: '
                       f'{", ".join(DIVERGENCES)}')
    if self.divergence != 'reverse_kl' and not self.adversarial:
      raise ValueError(f'objective.divergence={self.divergence!r} weights by the density ratio '
                       'the GAN discriminator estimates: set objective.gan_generator_weight and '
                       'gan_discriminator_weight > 0')
    fake_score.check_grid_fractions(self.u_min, self.u_max)
    fake_score.check_fake_score_sigma(self.fake_score_sigma)

  @property
  def adversarial(self) -> bool:
    return self.gan_generator_weight > 0

  def _student_sigmas(self, num_steps: int):
    """sigma_0 = sigma_init > ... > sigma_{k-1}: the first k points of a (k + 1)-point Karras
    grid (EDM Eq. 5) from sigma_init to sigma_min."""
    return samplers.multistep_sigmas(num_steps, self.sigma_min, self.sigma_init, self.rho)

  def init(self, rng, batch, teacher_params):
    return fake_score.init_generator_and_fake_score_with_head(
        self.denoiser, rng, batch['x'], teacher_params, self.init_from_teacher, self.head_hidden,
        with_head=self.adversarial)

  def trains(self, group, step):
    """Two time-scale updates: the generator trains after every N fake-score updates."""
    return base.generator_trains_every(group, step, self.fake_score_updates_per_generator_update)

  def _fake_score_sigma(self, rng, shape):
    """The fake score's and the classifier's noise levels (``fake_score_sigma``)."""
    return fake_score.sample_fake_score_sigma(
        self.fake_score_sigma, rng, shape, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
        rho=self.rho, p_mean=self.p_mean, p_std=self.p_std)

  def _generate(self, generator_params, x, sigma, labels, *, train=False, rng=None):
    """x_g = G_theta(x, sigma) = D_theta(x, sigma); one step from noise: x = sigma_init z."""
    return self.denoiser(generator_params, x, sigma, labels, train=train, rng=rng)

  def _generator_samples(self, generator_params, rng, shape, labels):
    """Generator samples x_g (differentiable w.r.t. the generator at its last step only).

    One step: G(sigma_init z). k steps: backward simulation (DMD2 §4.5), the input at each
    example's drawn step i made by the generator itself without gradient."""
    key_z, key_i, key_sim, key_dropout = jax.random.split(rng, 4)
    sigmas = self._student_sigmas(self.student_steps)
    x = sigmas[0] * jax.random.normal(key_z, shape)
    sigma = jnp.full(shape[:1], sigmas[0])
    if self.student_steps > 1:
      step = jax.random.randint(key_i, shape[:1], 0, self.student_steps)
      inputs = x
      for j in range(1, self.student_steps):
        x0 = jax.lax.stop_gradient(self._generate(generator_params, x, sigmas[j - 1], labels))
        x = x0 + sigmas[j] * jax.random.normal(jax.random.fold_in(key_sim, j), shape)
        inputs = jnp.where(diffusion.expand_like(step == j, x), x, inputs)
      sigma = sigmas[step]
      x = inputs
    return self._generate(generator_params, x, sigma, labels, train=True, rng=key_dropout)

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    key_label, key_gen, key_loss = jax.random.split(rng, 3)
    shape = batch['x'].shape
    labels = denoiser_lib.uniform_labels(key_label, shape[0], self.denoiser.num_classes)
    x_g = self._generator_samples(params['generator'], key_gen, shape, labels)
    fake = params['fake_score']
    real_labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
    if group == 'fake_score':
      denoising, discriminator, _ = fake_score.fake_score_losses(
          self.denoiser, fake['denoiser'], x_g, labels, key_loss,
          sample_sigma=self._fake_score_sigma, x_real=batch['x'] if self.adversarial else None,
          real_labels=real_labels, head_params=fake.get('head'), independent_real=True)
      loss = jnp.mean(denoising)
      metrics = {}
      if self.adversarial:
        metrics = {'denoising_loss': loss, 'discriminator_loss': jnp.mean(discriminator)}
        loss = loss + self.gan_discriminator_weight * metrics['discriminator_loss']
      return loss, {'loss': loss, **metrics}

    key_sigma, key_eps, key_reg, key_gan = jax.random.split(key_loss, 4)
    sigma = diffusion.sample_karras_sigma(key_sigma, shape[:1], self.u_min, self.u_max,
                                          self.sigma_min, self.sigma_max, self.rho)
    x_t = diffusion.add_noise(key_eps, x_g, sigma)
    teacher_labels = denoiser_lib.conditioning_labels(self.teacher, labels)
    f_real = denoiser_lib.guided(self.teacher, teacher_params, x_t, sigma, teacher_labels,
                                 self.guidance_scale)
    f_fake = self.denoiser(fake['denoiser'], x_t, sigma, labels)
    matching = distribution_matching_loss(x_g, f_real, f_fake)
    if self.adversarial:  # the classifier at its own noise level (DMD2 compute_cls_logits)
      key_gan_sigma, key_gan_eps = jax.random.split(key_gan)
      sigma_gan = self._fake_score_sigma(key_gan_sigma, shape[:1])
      x_gan = diffusion.add_noise(key_gan_eps, x_g, sigma_gan)
      features = self.denoiser.with_features(fake['denoiser'], x_gan, sigma_gan, labels)[1]
      logits = fake_score.discriminator_logits(features, fake['head'])
      matching = matching * f_divergence_weight(logits, self.divergence)
    matching = jnp.mean(matching)
    loss, metrics = matching, {'distribution_matching_loss': matching}
    if self.regression_weight > 0:
      if 'noise' not in batch:
        raise ValueError('objective.regression_weight > 0 (DMD) needs noise -> teacher-sample '
                         "pairs: set config.data.name='couplings'")
      x_pair = self._generate(params['generator'], self.sigma_init * batch['noise'],
                              self.sigma_init, real_labels, train=True, rng=key_reg)
      regression = jnp.mean((x_pair - batch['x']) ** 2)
      metrics['regression_loss'] = regression
      loss = loss + self.regression_weight * regression
    if self.adversarial:
      adversarial = jnp.mean(fake_score.generator_adversarial_loss(logits))
      metrics['adversarial_loss'] = adversarial
      loss = loss + self.gan_generator_weight * adversarial
    return loss, {'loss': loss, 'score_gap': fake_score.score_gap(f_real, f_fake), **metrics}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` generator steps on :meth:`_student_sigmas`: x = G(sigma_0 z), then re-noise
    to sigma_i and apply G, for i = 1 .. k - 1 (DMD2's multi-step sampling)."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self._generate(params['generator'], x, sigma, labels), rng, shape,
        self._student_sigmas(num_steps))
