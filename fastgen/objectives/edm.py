"""EDM denoising score matching: how fastgen trains its own diffusion teachers.

Loss (Karras et al. 2022, Eq. 2 with the weighting and noise distribution of Table 1):

  E_{x0, ln sigma ~ N(P_mean, P_std^2), eps} [ lambda(sigma) || D(x0 + sigma eps, sigma) - x0 ||^2 ],
  lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

Sampling is EDM's deterministic Heun (Algorithm 1) on the Karras grid; ``num_steps`` counts grid
intervals, so k steps cost 2k - 1 network evaluations. Group ``'denoiser'``.

Differences from the official code (github.com/NVlabs/edm, ``training/loss.py``):
* the loss is averaged over dimensions where EDM sums them (a constant, which Adam ignores up to
  its eps);
* no non-leaking augmentation;
* ``label_dropout`` > 0 trains the null label for classifier-free guidance, which EDM does not;
* EDM's stochastic sampler (Algorithm 2) is not implemented.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base


def denoising_loss(denoiser, params, x0, labels, rng, *, p_mean, p_std, train=True):
  """Per-example EDM loss lambda(sigma) ||D(x0 + sigma eps, sigma) - x0||^2 (mean over dims)."""
  key_sigma, key_eps, key_dropout = jax.random.split(rng, 3)
  sigma = diffusion.sample_lognormal_sigma(key_sigma, x0.shape[:1], p_mean, p_std)
  noisy = diffusion.add_noise(key_eps, x0, sigma)
  x0_hat = denoiser(params, noisy, sigma, labels, train=train, rng=key_dropout)
  weight = diffusion.edm_loss_weight(sigma, denoiser.sigma_data)
  return weight * jnp.mean((x0_hat - x0) ** 2, axis=tuple(range(1, x0.ndim)))


@dataclasses.dataclass(frozen=True)
class EDM(base.Objective):
  """Train a denoiser from data with the EDM loss; group 'denoiser'."""
  denoiser: Denoiser
  p_mean: float = -1.2
  p_std: float = 1.2
  label_dropout: float = 0.0
  sampler: str = 'heun'
  guidance_scale: float = 1.0
  sigma_max: float = 80.0
  groups = ('denoiser',)
  network_group = 'denoiser'

  def init(self, rng, batch, teacher_params):
    del teacher_params
    return {'denoiser': self.denoiser.init(rng, batch['x'], self._labels(batch))}

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.denoiser, batch['label'])

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params, step
    key_drop, key_loss = jax.random.split(rng)
    labels = base.drop_labels(key_drop, self._labels(batch), self.denoiser.num_classes,
                              self.label_dropout)
    per_example = denoising_loss(self.denoiser, params['denoiser'], batch['x'], labels, key_loss,
                                 p_mean=self.p_mean, p_std=self.p_std)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    del teacher_params
    return samplers.sample(self.denoiser, params['denoiser'], rng, shape, method=self.sampler,
                           num_steps=num_steps,
                           labels=denoiser_lib.conditioning_labels(self.denoiser, labels),
                           guidance_scale=self.guidance_scale, sigma_max=self.sigma_max)
