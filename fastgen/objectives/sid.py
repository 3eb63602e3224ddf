"""Score identity Distillation (SiD; Zhou et al. 2024, "Score identity Distillation: Exponentially
Fast Distillation of Pretrained Diffusion Models for One-Step Generation", ICML 2024, §4 and
Algorithm 1; official code: github.com/mingyuanzhou/SiD, ``training/sid_loss.py``).

Data-free: only the teacher's denoiser f_phi = D_teacher is used. Two trainable groups, in order:

* ``'fake_score'`` f_psi: the EDM denoising loss (Karras et al. 2022, Eq. 2 with Table 1's
  lambda(sigma) and ln sigma ~ N(P_mean, P_std^2)) on stop-gradient generator samples, so f_psi
  tracks the denoiser of the generator's own distribution p_theta.
* ``'generator'`` G_theta, one step x_g = G_theta(z) = D_theta(sigma_init z, sigma_init),
  z ~ N(0, I): with x_t = x_g + sigma eps and both denoisers evaluated at (x_t, sigma), the loss
  per example is the paper's alpha-fused identity loss

    L_theta = [ (1 - alpha) ||f_phi - f_psi||^2 + (f_phi - f_psi)^T (f_psi - x_g) ] / w,
            = [ (f_phi - f_psi)^T (f_phi - x_g) - alpha ||f_phi - f_psi||^2 ] / w,
    w = sg( mean_d |x_g - f_phi(x_t, sigma)| )  (clipped below at 1e-5),

  summed over dimensions and averaged over the batch (the official code also multiplies by 100,
  an fp16 loss scale, and sums the fake-score loss over dimensions where ``edm.denoising_loss``
  averages; Adam is invariant to both constants up to its eps). The normaliser w is the paper's
  choice of omega(t) (borrowed from DMD, Yin et al. 2024); alpha = 1.2 is the paper's default.
  Gradients reach theta only through x_g, directly and via x_t: the teacher's and fake score's
  params are constants of this group's loss (the trainer differentiates w.r.t. the generator
  only), and the fake score runs in inference mode, as in the official code.
  The noise level follows the official code: t ~ U[0, tmax / 1000] and
  sigma = (s_max^(1/rho) + (1 - t) (s_min^(1/rho) - s_max^(1/rho)))^rho (EDM Eq. 5's grid read
  continuously), so tmax = 800 caps sigma near 24 for (s_min, s_max, rho) = (0.002, 80, 7).

If f_psi = f_phi as functions (p_theta matches the teacher at every sigma), f_phi - f_psi is zero
for every theta, and so is L_theta's gradient: only the mismatch of the two scores drives G.

SiDA (Zhou et al. 2025, "Adversarial Score identity Distillation: Rapidly Surpassing the Teacher
in One Step", ICLR 2025, §3; official code ``sida/sida_loss.py``) is the option
``gan_generator_weight = lambda_G > 0``, ``gan_discriminator_weight = lambda_D > 0``: the fake
score's network doubles as a parameter-free discriminator, logits = the channel mean of its
features (:mod:`fastgen.objectives.fake_score`), trained on real data (the run's data set,
``batch['x']``). Per example, with D the data dimension,

  fake score:  lambda(sigma) mean_d ||f_psi - x_g||^2
               + lambda_D lambda(sigma) [BCE(real -> 1) + BCE(x_g -> 0)] / (2 D),
  generator:   L_theta + lambda_G D BCE(x_g -> 1) / w   (logits clipped to [-10, 10]),

both BCEs averaged over feature positions, real and generated samples noised with the same sigma
and eps. This is the official loss in this module's units: the official fake-score loss is
``ls`` sum_d (...) + ``lsd`` lambda(sigma) (BCE_r + BCE_f) / 2 and the generator's
0.5 ``lsg`` sum_d L_theta + 0.5 ``lsg_gan`` D BCE / w, so lambda_D = lsd / ls and
lambda_G = lsg_gan / lsg (CIFAR-10: 1 and 0.01 / 100 = 1e-4). Differences: the BCE is per example
where the official code takes the batch mean before dividing by w, and generated samples get
uniform labels where the official code reuses the real batch's labels.

Labels of class-conditional students are drawn uniformly (the official code reads them from the
data set); the batch only sets the batch size. Initialisation: generator and fake score both
start from the teacher's params (as in the paper) when the teacher is a network with the
student's architecture, i.e. when ``teacher_params`` has the tree structure, shapes and dtypes of
the student network's params. ``init_from_teacher=False`` starts both from a fresh init, which
is the only choice for a closed-form teacher (:mod:`fastgen.teachers.analytic`); asking for the
impossible is an error, never a silent fallback.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import fake_score


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
class SiD:
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
  gan_generator_weight: float = 0.0      # SiDA's lambda_G (0: plain SiD)
  gan_discriminator_weight: float = 0.0  # SiDA's lambda_D
  groups = ('fake_score', 'generator')

  def __post_init__(self):
    fake_score.check_adversarial_weights(self.gan_generator_weight, self.gan_discriminator_weight)
    fake_score.check_grid_fractions(self.u_min, self.u_max)

  @property
  def adversarial(self) -> bool:
    return self.gan_generator_weight > 0

  def init(self, rng, batch, teacher_params):
    key_g, key_f, key_label = jax.random.split(rng, 3)
    labels = denoiser_lib.uniform_labels(key_label, batch['x'].shape[0], self.denoiser.num_classes)
    generator, fake_score_params = fake_score.init_generator_and_fake_score(
        self.denoiser, key_g, key_f, batch['x'], labels, teacher_params, self.init_from_teacher)
    return {'generator': generator, 'fake_score': fake_score_params}

  def generate(self, generator_params, z, labels, *, train=False, rng=None):
    """x_g = G_theta(z) = D_theta(sigma_init z, sigma_init) for z ~ N(0, I)."""
    return self.denoiser(generator_params, self.sigma_init * z, self.sigma_init, labels,
                         train=train, rng=rng)

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    key_label, key_z, key_gen, key_loss = jax.random.split(rng, 4)
    shape = batch['x'].shape
    labels = denoiser_lib.uniform_labels(key_label, shape[0], self.denoiser.num_classes)
    x_g = self.generate(params['generator'], jax.random.normal(key_z, shape), labels, train=True,
                        rng=key_gen)
    if group == 'fake_score':
      real = batch['x'] if self.adversarial else None
      real_labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
      denoising, discriminator, sigma = fake_score.fake_score_losses(
          self.denoiser, params['fake_score'], x_g, labels, key_loss, p_mean=self.p_mean,
          p_std=self.p_std, x_real=real, real_labels=real_labels)
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
    x_t = x_g + diffusion.expand_like(sigma, x_g) * jax.random.normal(key_eps, shape)
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
    gap = jnp.mean(jnp.sum((f_real - f_fake) ** 2, axis=tuple(range(1, x_g.ndim))))
    return loss, {'loss': loss, 'score_gap': gap, **metrics}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps=1``: x = G(z), the SiD generator. ``k > 1`` (an extension, not in the paper):
    multistep consistency-style sampling (Song et al. 2023, Algorithm 1) with G in place of the
    consistency function: re-noise to sigma_i and apply G at sigma_i, for the k - 1 interior
    points sigma_1 > ... > sigma_{k-1} of a (k + 1)-point Karras grid (EDM Eq. 5) from sigma_init
    to sigma_min. G is trained only at sigma_init, so later steps rely on what it kept of the
    teacher's denoiser."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self.denoiser(params['generator'], x, sigma, labels), rng, shape,
        samplers.multistep_sigmas(num_steps, self.sigma_min, self.sigma_init, self.rho))
