"""Uni-Instruct (Wang et al. 2025, "Uni-Instruct: One-step Diffusion Model through Unified
Diffusion Divergence Instruction", NeurIPS 2025, arXiv 2505.20755, §3): a one-step generator
trained on the diffusion expansion of an f-divergence, which contains SiD / SIM (reverse KL),
Diff-Instruct / DMD and f-distill as special cases.

Expansion: forward-diffusing the generator's q_0 and the teacher's p_0 with the same noise,
D_f(q_0 || p_0) = E_{p_0} f(q_0 / p_0) dissipates as

  D_f(q_0 || p_0) = int w(t) E_{x_t ~ q_t} [ h(r_t) ||s_q(x_t) - s_p(x_t)||^2 ] dt,
  h(r) = f''(r) r,   r_t = q_t / p_t.

Its gradient (derived in docs/rules/uni_instruct.md, by the route of SIM's score-gradient
theorem) is the pathwise gradient, through x_t = x_g + sigma eps and x_g with every network
frozen, of

  L = [ a(r) ||Delta||^2 + b(r) Delta^T (f_psi - x_g) ] / w,
  Delta = f_phi(x_t) - f_psi(x_t),   a = h + r h'(r),   b = 2 h(r),

in denoiser units (f_phi the teacher, f_psi the fake score, w SiD's normaliser). The density
ratio r = q_t / p_t is read off a discriminator on the fake score's features, trained on real
data: its logit estimates log(p_t / q_t), so r = exp(-logit) (DMD2's head,
:mod:`fastgen.objectives.fake_score`), and the gradient of L flows through r(x_t) too.
Divergences (``divergence``): 'forward_kl' KL(p || q) (f = -log r: h = 1 / r, a = 0; the paper's
best ImageNet-64 run), 'reverse_kl' KL(q || p) (f = r log r: h = 1, a = 1; SIM with the squared
distance, twice SiD's loss at alpha = 0.5, no discriminator needed), 'js' (h = 1 / (1 + r),
a = 1 / (1 + r)^2).

Groups, in order: ``'fake_score'`` (the EDM denoising loss on stop-gradient generator samples plus
``discriminator_weight`` times the discriminator's BCE on noisy real and generated samples, noise
levels ``fake_score_sigma``: EDM's log-normal by default, as SiD's and SiDA's code, or DMD2's
'karras_grid'), then ``'generator'`` at u ~ U[u_min, u_max] on EDM's grid.

Differences from the paper: the loss is derived here and checked against the exact gradient of the
expanded divergence on a Gaussian (tests/objectives/test_uni_instruct.py), not copied from the
paper's Theorem 3.2, whose printed form was not consulted; a and b are divided by the batch mean of
h(r) (stop-gradient; fastgen's choice, as f-distill's normalisation in dmd.py), the logit clipped to
[-10, 10]; the recipe is SiD's, and so are the fake score's noise levels (log-normal; its
discriminator learns at them too, as SiDA's does, while the generator queries the ratio on the
grid). The first author's code (github.com/a-little-hoof/Uni_Instruct, released November 2025, after
this rule was written), read against this loss in docs/rules/uni_instruct.md: its forward-KL weight
is in effect 1 (SiDA's update at alpha = 1), its other divergences do not run as released; its
recipe differences are listed in configs/uni_instruct.py. On digits the grid levels ('karras_grid',
this rule's former default) learnt far slower: one-step FID 16.0 / 6.38 at steps 250 / 500 against
9.99 / 3.04 with the log-normal ones (docs/results.md).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, fake_score, sid

DIVERGENCES = ('forward_kl', 'reverse_kl', 'js')


def divergence_weights(ratio, divergence: str):
  """``(h(r), a(r))`` of the expanded f-divergence at density ratio r = q / p:
  h = f''(r) r, a = h + r h'(r)."""
  if divergence == 'forward_kl':
    return 1.0 / ratio, jnp.zeros_like(ratio)
  if divergence == 'reverse_kl':
    return jnp.ones_like(ratio), jnp.ones_like(ratio)
  if divergence == 'js':
    return 1.0 / (1.0 + ratio), 1.0 / (1.0 + ratio) ** 2
  raise ValueError(f'unknown objective.divergence {divergence!r}; known: {", ".join(DIVERGENCES)}')


def expanded_f_surrogate(f_real, f_fake, x_g, h, a):
  """Per-example a ||Delta||^2 + 2 h Delta^T (f_psi - x_g), Delta = f_phi - f_psi, h and a [B]:
  with frozen networks (and r), its pathwise gradient is the expanded f-divergence's."""
  axes = tuple(range(1, x_g.ndim))
  delta = f_real - f_fake
  return (a * jnp.sum(delta**2, axis=axes) +
          2.0 * h * jnp.sum(delta * (f_fake - x_g), axis=axes))


@dataclasses.dataclass(frozen=True)
class UniInstruct(fake_score.OneStepGenerator, base.Objective):
  """One-step generator on the expanded f-divergence; groups 'fake_score' (denoiser and density-
  ratio head) then 'generator'."""
  denoiser: Denoiser            # architecture of both the generator and the fake score
  teacher: Any                  # f_phi: teacher(teacher_params, x, sigma, labels) -> x0_hat
  divergence: str = 'forward_kl'
  discriminator_weight: float = 1.0  # the head's BCE in the fake-score loss
  head_hidden: int = 256
  fake_score_sigma: str = 'lognormal'  # the fake score's and discriminator's noise levels
  p_mean: float = -1.2          # fake_score_sigma='lognormal': ln sigma ~ N(p_mean, p_std^2)
  p_std: float = 1.2
  sigma_init: float = 2.5       # the generator's input noise level
  u_min: float = 0.0            # the generator loss's noise levels, as fractions of the grid
  u_max: float = 0.8
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  init_from_teacher: bool = True
  fake_score_samples_in_train_mode: bool = False  # True: dropout on for the fake score's samples
  groups = ('fake_score', 'generator')
  network_group = 'generator'

  def __post_init__(self):
    if self.divergence not in DIVERGENCES:
      raise ValueError(f'unknown objective.divergence {self.divergence!r}; known: '
                       f'{", ".join(DIVERGENCES)}')
    if self.divergence != 'reverse_kl' and not self.discriminator_weight > 0:
      raise ValueError(f'objective.divergence={self.divergence!r} weights by the density ratio '
                       'the discriminator estimates: set objective.discriminator_weight > 0')
    fake_score.check_grid_fractions(self.u_min, self.u_max)
    fake_score.check_fake_score_sigma(self.fake_score_sigma)

  @property
  def _needs_ratio(self) -> bool:
    return self.divergence != 'reverse_kl'

  def init(self, rng, batch, teacher_params):
    return fake_score.init_generator_and_fake_score_with_head(
        self.denoiser, rng, batch['x'], teacher_params, self.init_from_teacher, self.head_hidden,
        with_head=self._needs_ratio)

  def _fake_score_sigma(self, rng, shape):
    return fake_score.sample_fake_score_sigma(
        self.fake_score_sigma, rng, shape, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
        rho=self.rho, p_mean=self.p_mean, p_std=self.p_std)

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del ema_params, step
    shape = batch['x'].shape
    x_g, labels, key_loss = self._samples(group, params['generator'], shape, rng)
    fake = params['fake_score']
    if group == 'fake_score':
      denoising, discriminator, _ = fake_score.fake_score_losses(
          self.denoiser, fake['denoiser'], x_g, labels, key_loss,
          sample_sigma=self._fake_score_sigma,
          x_real=batch['x'] if self._needs_ratio else None,
          real_labels=denoiser_lib.conditioning_labels(self.denoiser, batch['label']),
          head_params=fake.get('head'), independent_real=True)
      loss = jnp.mean(denoising)
      metrics = {}
      if self._needs_ratio:
        metrics = {'denoising_loss': loss, 'discriminator_loss': jnp.mean(discriminator)}
        loss = loss + self.discriminator_weight * metrics['discriminator_loss']
      return loss, {'loss': loss, **metrics}
    key_sigma, key_eps = jax.random.split(key_loss)
    sigma = diffusion.sample_karras_sigma(key_sigma, shape[:1], self.u_min, self.u_max,
                                          self.sigma_min, self.sigma_max, self.rho)
    x_t = diffusion.add_noise(key_eps, x_g, sigma)
    f_real = self.teacher(teacher_params, x_t, sigma,
                          denoiser_lib.conditioning_labels(self.teacher, labels))
    if self._needs_ratio:
      f_fake, features = self.denoiser.with_features(fake['denoiser'], x_t, sigma, labels)
      logit = jnp.clip(fake_score.discriminator_logits(features, fake['head'])[:, 0], -10, 10)
      ratio = jnp.exp(-logit)  # q_t / p_t
    else:
      f_fake = self.denoiser(fake['denoiser'], x_t, sigma, labels)
      ratio = jnp.ones(shape[:1])
    h, a = divergence_weights(ratio, self.divergence)
    scale = jax.lax.stop_gradient(jnp.mean(h))
    normaliser = sid.sid_normaliser(x_g, f_real).reshape(shape[0])
    per_example = expanded_f_surrogate(f_real, f_fake, x_g, h / scale, a / scale) / normaliser
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'score_gap': fake_score.score_gap(f_real, f_fake),
                  'mean_log_ratio': jnp.mean(jnp.log(ratio))}
