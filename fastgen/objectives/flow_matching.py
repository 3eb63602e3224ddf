"""Flow matching / rectified flow (Liu et al. 2022, Eq. 1; Lipman et al. 2023, Eq. 23): how
fastgen trains its own flow teachers.

  x_t = (1 - t) x0 + t eps,   min E || v(x_t, t) - (eps - x0) ||^2,

with t uniform or logit-normal (Esser et al. 2024, Eq. 19). The network is wrapped as a
``'flow'``-parameterized :class:`~fastgen.denoiser.Denoiser`, so a flow teacher is a denoiser like
any other; sampling is Euler in t (``num_steps`` network evaluations). Group ``'denoiser'``.

Differences from the papers: time runs the other way (noise at t = 1, as Esser et al. 2024; Liu
et al. and Lipman et al. put the data there), and t ~ U[1e-5, 1).

The flow convention and the rules built on flows: docs/rules/rectified_flows.md.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base

T_MIN, T_MAX = 1e-5, 1.0  # training times; a flow network is finite at t = 1


def velocity_matching_loss(denoiser, params, x0, t, eps, labels, *, train=False, rng=None):
  """E || v(x_t, t) - (eps - x0) ||^2 at x_t = (1 - t) x0 + t eps (Liu et al. 2022, Eq. 1;
  Lipman et al. 2023, Eq. 23), the mean over batch and dimensions for the given t and eps."""
  x_t = (1 - diffusion.expand_like(t, x0)) * x0 + diffusion.expand_like(t, x0) * eps
  v = denoiser.velocity(params, x_t, t, labels, train=train, rng=rng)
  return jnp.mean((v - (eps - x0)) ** 2)


@dataclasses.dataclass(frozen=True)
class FlowMatching(base.Objective):
  """Train a velocity network from data; group 'denoiser' (a flow-parameterized denoiser)."""
  denoiser: Denoiser
  time_distribution: str = 'uniform'
  label_dropout: float = 0.0
  groups = ('denoiser',)
  network_group = 'denoiser'

  def __post_init__(self):
    if self.denoiser.parameterization != 'flow':
      raise ValueError('flow_matching needs network.parameterization="flow"')
    if self.time_distribution not in diffusion.FLOW_TIME_DISTRIBUTIONS:
      raise ValueError(f'unknown objective.time_distribution {self.time_distribution!r}; '
                       f'known: {", ".join(diffusion.FLOW_TIME_DISTRIBUTIONS)}')

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.denoiser, batch['label'])

  def init(self, rng, batch, teacher_params):
    del teacher_params
    return {'denoiser': self.denoiser.init(rng, batch['x'], self._labels(batch))}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params, step
    key_drop, key_t, key_eps, key_dropout = jax.random.split(rng, 4)
    x0 = batch['x']
    labels = base.drop_labels(key_drop, self._labels(batch), self.denoiser.num_classes,
                              self.label_dropout)
    t = diffusion.sample_flow_time(key_t, x0.shape[:1], self.time_distribution, T_MIN, T_MAX)
    eps = jax.random.normal(key_eps, x0.shape)
    loss = velocity_matching_loss(self.denoiser, params['denoiser'], x0, t, eps, labels,
                                  train=True, rng=key_dropout)
    return loss, {'loss': loss}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    del teacher_params
    return samplers.sample(self.denoiser, params['denoiser'], rng, shape, method='flow_euler',
                           num_steps=num_steps,
                           labels=denoiser_lib.conditioning_labels(self.denoiser, labels))
