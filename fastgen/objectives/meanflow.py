"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling", arXiv:2505.13447).

Flow path z_t = (1 - t) x + t e, e ~ N(0, I), conditional velocity v = e - x (§3, Eq. 1-2). The
network models the average velocity over [r, t] (Eq. 3),

  u(z_t, r, t) = 1 / (t - r) int_r^t v(z_tau, tau) dtau,

which satisfies the MeanFlow identity (Eq. 6) u = v - (t - r) du/dt with the total derivative
du/dt = v d_z u + d_t u (Eq. 8), one forward-mode product jvp(u, (z, r, t), (v, 0, 1)) computed by
``jax.jvp`` through the network (its primal output is u_theta itself, so one call gives both).
The loss (Eq. 9-10):

  L = E || u_theta(z_t, r, t) - sg(u_tgt) ||^2,   u_tgt = v - (t - r) (v d_z u_theta + d_t u_theta),

with the adaptive loss weighting of §4.3 / Appendix: w = sg(1 / (||Delta||^2 + c)^p), L = w ||Delta||^2,
Delta = u_theta - u_tgt (p = 0 is the plain squared L2). (r, t): two logit-normal draws
sigmoid(N(mu, s^2)) sorted so that t >= r, then r = t for a fraction 1 - ``ratio_r_neq_t`` of the
batch (where r = t the target is the instantaneous velocity: flow matching). Sampling (Eq. 12):
z_r = z_t - (t - r) u(z_t, r, t); one step z_0 = z_1 - u(z_1, 0, 1).

The second time input: the network embeds (t, t - r) (the paper's best positional input, Table 1c)
as two columns of ``noise_cond`` (s t, s (t - r)), each with its own positional embedding
concatenated before the mapping layers (:func:`fastgen.networks.unet.embed_times`), so the MLP
and SongUNet need no other change. s = ``time_scale`` = 1 by default: with fastgen's flow-network
scale s = 1000 the JVP's d_t u sees the embedding's fastest frequencies and the 1-step FD on
gmm2d stalled at 0.05-0.07 (0.009 with s = 1 at 2000 steps).

Differences from the official code: the paper's defaults on ImageNet are mu = -0.4, s = 1.0,
ratio 0.25, p = 1, c = 1e-3 (Table 1, Appendix), taken as defaults here; the classifier-free
guidance variant (§4.2) is not implemented; the loss sums ||Delta||^2 over dimensions (the
weighting then reads it on the same scale).
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion
from fastgen.denoiser import FLOW_NOISE_SCALE, Denoiser, Network
from fastgen.objectives import base


@dataclasses.dataclass(frozen=True)
class AverageVelocity(Network):
  """u(params, z, r, t, labels) = net(z; (s t, s (t - r)), labels), s = ``time_scale``."""
  time_scale: float = FLOW_NOISE_SCALE

  def init(self, rng, x, labels=None):
    times = jnp.ones(x.shape[:1] + (2,), jnp.float32)
    return self.net.init({'params': rng}, x, times, labels, train=False)['params']

  def __call__(self, params, z, r, t, labels=None, *, train=False, rng=None):
    r, t = (jnp.broadcast_to(jnp.asarray(a, jnp.float32), z.shape[:1]) for a in (r, t))
    times = self.time_scale * jnp.stack([t, t - r], axis=1)
    return self._apply(params, z, times, labels, train, rng).astype(z.dtype)


TIME_DISTRIBUTIONS = ('logit_normal', 'uniform')


def sample_times(rng, shape, mu, sigma, ratio_r_neq_t, distribution='logit_normal'):
  """(r, t): r <= t, the sorted pair of two draws of sigmoid(N(mu, sigma^2)) (or U(0, 1), the
  paper's other sampler, Table 1); r = t for a fraction 1 - ``ratio_r_neq_t``."""
  key_a, key_b, key_eq = jax.random.split(rng, 3)
  if distribution == 'uniform':
    a, b = (jax.random.uniform(k, shape) for k in (key_a, key_b))
  else:
    a, b = (jax.nn.sigmoid(mu + sigma * jax.random.normal(k, shape)) for k in (key_a, key_b))
  t, r = jnp.maximum(a, b), jnp.minimum(a, b)
  equal = jax.random.uniform(key_eq, shape) >= ratio_r_neq_t
  return jnp.where(equal, t, r), t


def meanflow_target(u_fn, z, r, t, v):
  """(u_theta, sg(u_tgt)), u_tgt = v - (t - r) jvp(u_theta, (z, r, t), (v, 0, 1)) (Eq. 8, 10)."""
  u, du_dt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
  target = v - diffusion.expand_like(t - r, z) * jax.lax.stop_gradient(du_dt)
  return u, jax.lax.stop_gradient(target)


def adaptive_loss(u, target, power, c):
  """Per example sg(1 / (||Delta||^2 + c)^p) ||Delta||^2, Delta = u - target (§4.3)."""
  squared = jnp.sum((u - target) ** 2, axis=tuple(range(1, u.ndim)))
  return jax.lax.stop_gradient(1.0 / (squared + c) ** power) * squared, squared


@dataclasses.dataclass(frozen=True)
class MeanFlow(base.Objective):
  """Train a one-step average-velocity model from data; group 'student'."""
  denoiser: Denoiser            # config.network: its raw network becomes u_theta
  time_distribution: str = 'logit_normal'
  time_mu: float = -0.4
  time_sigma: float = 1.0
  ratio_r_neq_t: float = 0.25
  weight_power: float = 1.0     # p; 0: plain squared L2
  weight_c: float = 1e-3
  time_scale: float = 1.0       # the network sees (s t, s (t - r))
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if self.time_distribution not in TIME_DISTRIBUTIONS:
      raise ValueError(f'unknown objective.time_distribution {self.time_distribution!r}; known: '
                       f'{", ".join(TIME_DISTRIBUTIONS)}')

  @property
  def student(self) -> AverageVelocity:
    return AverageVelocity(self.denoiser.net, self.time_scale)

  def _labels(self, labels):
    return denoiser_lib.conditioning_labels(self.student, labels)

  def init(self, rng, batch, teacher_params):
    del teacher_params
    return {'student': self.student.init(rng, batch['x'], self._labels(batch['label']))}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params, step
    key_t, key_e, key_dropout = jax.random.split(rng, 3)
    x, labels = batch['x'], self._labels(batch['label'])
    r, t = sample_times(key_t, x.shape[:1], self.time_mu, self.time_sigma, self.ratio_r_neq_t,
                        self.time_distribution)
    e = jax.random.normal(key_e, x.shape)
    z = (1 - diffusion.expand_like(t, x)) * x + diffusion.expand_like(t, x) * e
    u_fn = lambda z, r, t: self.student(params['student'], z, r, t, labels, train=True,
                                        rng=key_dropout)
    u, target = meanflow_target(u_fn, z, r, t, e - x)
    per_example, squared = adaptive_loss(u, target, self.weight_power, self.weight_c)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'squared_error': jnp.mean(squared)}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """z_r = z_t - (t - r) u(z_t, r, t) on t = 1, (k-1)/k, ..., 0 (Eq. 12)."""
    del teacher_params
    labels = self._labels(labels)
    times = jnp.linspace(1.0, 0.0, num_steps + 1)
    z = jax.random.normal(rng, shape)
    for i in range(num_steps):
      t, r = times[i], times[i + 1]
      z = z - (t - r) * self.student(params['student'], z, r, t, labels)
    return z
