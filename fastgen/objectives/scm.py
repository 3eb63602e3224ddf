"""Continuous-time consistency models in TrigFlow: sCT and sCD (Lu & Song 2024, "Simplifying,
Stabilizing and Scaling Continuous-Time Consistency Models", arXiv:2410.11081, §3-4).

The student is a TrigFlow network F_theta (:class:`fastgen.trigflow.TrigFlowNetwork`) with the
consistency function f_theta(x_t, t) = cos(t) x_t - sin(t) sigma_d F_theta(x_t / sigma_d, t).
The continuous-time consistency gradient (§4, with the paper's weighting w(t) = 1 / (sigma_d tan t))
is grad_theta E[-F_theta^T g] with the tangent

  g = cos(t) df_theta-/dt = -cos^2(t) (sigma_d F_theta- - dx_t/dt)
                            - r cos(t) sin(t) (x_t + sigma_d dF_theta-/dt),

theta- = stop-gradient(theta). The total derivative along the PF-ODE is one forward-mode product,

  cos(t) sin(t) dF_theta-/dt = jvp(F_theta-, (x_t, t), (cos(t) sin(t) dx_t/dt, cos(t) sin(t))),

(the cos sin factor keeps both tangents bounded as t -> 0 or pi/2), computed by ``jax.jvp``
through the whole network; its primal output is F_theta itself, so one call gives both. The
objective (§4.2, "adaptive weighting", after EDM2) with tangent normalization (§4.2):

  L(theta, phi) = E_{x0, z, t} [ e^{w_phi(t)} / D ||F_theta - F_theta- - g / (||g|| + c)||^2 - w_phi(t) ],

c = 0.1, D the data dimension, w_phi a learned scalar of t (:class:`AdaptiveWeight`). Tangent
warm-up (§4.2): r = min(1, step / warmup_steps). Time distribution (§4.2, as EDM's):
tan(t) = e^tau / sigma_d, tau ~ N(P_mean, P_std^2).

* ``'sct'``: dx_t/dt = cos(t) z - sin(t) x0 (one-sample estimate of the PF-ODE velocity).
* ``'scd'``: dx_t/dt = the teacher's PF-ODE velocity, from any fastgen denoiser through the
  exact EDM <-> TrigFlow conversion (:func:`fastgen.trigflow.teacher_velocity`), optionally with
  classifier-free guidance.

Sampling (§3 and Algorithm 1's sampler): x0 = f(sigma_d z, t_max), t_max = arctan(sigma_max /
sigma_d); each further step re-noises x_t = cos(t) x0 + sin(t) sigma_d z at the next of
``intermediate_times`` (the paper's 2-step sampler uses t = 1.1) and applies f again.

Differences from the paper / NVIDIA FastGen's sCM: the learned weighting reads the student's
c_noise(t) through a positional embedding and one zero-initialised dense layer (EDM2 uses a
Fourier embedding); the paper's network changes (§4.1) are options, not defaults: adaptive
double normalization is the SongUNet's ``double_norm`` (:func:`fastgen.networks.unet.pixel_norm`
on each block's scale and shift; not in the ADM network or the MLP) and the time conditioning
``time_conditioning='trig'`` feeds c_noise = 1000 t to the network's positional embedding (the
paper's c_noise(t) = t, scaled to the embedding's range); configs/sct.py turns both on for
CIFAR-10, while a student initialised from an EDM teacher keeps EDM's network and c_noise
(``'log_sigma'``); no mixed-precision
JVP, no FlashAttention JVP kernels (``jax.jvp`` differentiates the attention as written); the
loss uses the per-dimension mean, i.e. ||.||^2 / D with D the data dimension, as FastGen.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion, trigflow
from fastgen.denoiser import Denoiser
from fastgen.networks import unet
from fastgen.objectives import base, consistency


class AdaptiveWeight(nn.Module):
  """w_phi(t): a dense layer on the positional embedding of c_noise(t) (EDM2's learned log
  variance, Karras et al. 2024, Eq. 21), zero at initialisation."""
  channels: int = 128

  @nn.compact
  def __call__(self, noise_cond):
    emb = unet.positional_embedding(noise_cond, self.channels, endpoint=True)
    return nn.Dense(1, kernel_init=nn.initializers.zeros, name='linear')(emb)[:, 0]


def sample_time(rng, shape, p_mean, p_std, sigma_data):
  """t = arctan(e^tau / sigma_d), tau ~ N(P_mean, P_std^2) (Lu & Song 2024, §4.2)."""
  sigma = jnp.exp(p_mean + p_std * jax.random.normal(rng, shape))
  return trigflow.time_of(sigma, sigma_data)


def tangent(F_minus, dF_dt_cs, x_t, dx_dt, t, sigma_data, warmup):
  """g = -cos^2(t) (sigma_d F- - dx_t/dt) - r (cos(t) sin(t) x_t + sigma_d cos(t) sin(t) dF-/dt),
  ``dF_dt_cs`` = cos(t) sin(t) dF-/dt, r = ``warmup``."""
  cos, sin = (diffusion.expand_like(fn(t), x_t) for fn in (jnp.cos, jnp.sin))
  return (-cos**2 * (sigma_data * F_minus - dx_dt)
          - warmup * (cos * sin * x_t + sigma_data * dF_dt_cs))


def normalize(g, c):
  """Tangent normalization g / (||g|| + c), the norm per example over all dimensions."""
  norm = jnp.sqrt(jnp.sum(g**2, axis=tuple(range(1, g.ndim)), keepdims=True))
  return g / (norm + c)


def scm_loss(F_fn, x0, z, t, dx_dt, weight, *, sigma_data, warmup, normalization):
  """Per-example sCM objective e^w ||F - sg(F) - g_n||^2 / D - w and the unweighted ||g_n||^2 / D,
  for ``F_fn(x_t, t)`` the student with its params (differentiated), ``weight`` = w_phi(t),
  g_n the tangent normalized with constant ``normalization`` (None: not normalized)."""
  x_t = trigflow.noisy(x0, z, t)
  cs = jnp.cos(t) * jnp.sin(t)
  F, dF_dt_cs = jax.jvp(F_fn, (x_t, t), (diffusion.expand_like(cs, x_t) * dx_dt, cs))
  F_minus, dF_dt_cs = jax.lax.stop_gradient((F, dF_dt_cs))
  g = tangent(F_minus, dF_dt_cs, x_t, jax.lax.stop_gradient(dx_dt), t, sigma_data, warmup)
  if normalization is not None:
    g = normalize(g, normalization)
  squared = jnp.mean((F - F_minus - g) ** 2, axis=tuple(range(1, x0.ndim)))
  return jnp.exp(weight) * squared - weight, squared


@dataclasses.dataclass(frozen=True)
class _SCM(base.Objective):
  """What sCT and sCD share: the TrigFlow student, the loss and the few-step sampler. Group
  'student' holds {'net': F_theta's params, 'weighting': w_phi's params}, trained jointly."""
  denoiser: Denoiser            # config.network: its raw network becomes F_theta
  p_mean: float = -1.0          # CIFAR-10 values (§4.2 / Appendix G)
  p_std: float = 1.4
  warmup_steps: int = 10_000    # tangent warm-up; 0: r = 1 from the start
  normalization: float = 0.1    # c of g / (||g|| + c); 0 or less: no normalization
  time_conditioning: str = 'log_sigma'
  sigma_max: float = 80.0       # t_max = arctan(sigma_max / sigma_d)
  intermediate_times: tuple = (1.1,)
  init_from_teacher: bool = False
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if self.time_conditioning not in trigflow.TIME_CONDITIONINGS:
      raise ValueError(f'unknown objective.time_conditioning {self.time_conditioning!r}; known: '
                       f'{", ".join(trigflow.TIME_CONDITIONINGS)}')

  @property
  def student(self) -> trigflow.TrigFlowNetwork:
    return trigflow.TrigFlowNetwork(self.denoiser.net, self.denoiser.sigma_data,
                                    self.time_conditioning)

  @property
  def weighting(self) -> AdaptiveWeight:
    return AdaptiveWeight()

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.student, batch['label'])

  def init(self, rng, batch, teacher_params):
    key_net, key_weight = jax.random.split(rng)
    if self.init_from_teacher and self.denoiser.parameterization != 'edm':
      raise ValueError('init_from_teacher needs network.parameterization="edm" (an EDM network is '
                       'a TrigFlow network with time_conditioning="log_sigma")')
    if self.init_from_teacher and self.time_conditioning != 'log_sigma':
      raise ValueError('init_from_teacher needs time_conditioning="log_sigma"')
    net = consistency.init_student(self.student.init, key_net, batch['x'], self._labels(batch),
                                   teacher_params, self.init_from_teacher)
    weighting = self.weighting.init(key_weight, jnp.zeros(batch['x'].shape[:1]))['params']
    return {'student': {'net': net, 'weighting': weighting}}

  def _dx_dt(self, teacher_params, x0, z, t, labels):
    """dx_t/dt of the rule (sCT: conditional velocity; sCD: the teacher's PF-ODE velocity)."""
    raise NotImplementedError

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params
    key_t, key_z, key_dropout = jax.random.split(rng, 3)
    x0, labels = batch['x'], self._labels(batch)
    student = params['student']
    t = sample_time(key_t, x0.shape[:1], self.p_mean, self.p_std, self.denoiser.sigma_data)
    z = self.denoiser.sigma_data * jax.random.normal(key_z, x0.shape)
    warmup = (jnp.minimum(step / self.warmup_steps, 1.0) if self.warmup_steps
              else jnp.float32(1.0))
    F_fn = lambda x_t, t: self.student(student['net'], x_t, t, labels, train=True,
                                       rng=key_dropout)
    weight = self.weighting.apply({'params': student['weighting']}, self.student.noise_cond(t))
    per_example, squared = scm_loss(
        F_fn, x0, z, t, self._dx_dt(teacher_params, x0, z, t, batch.get('label')), weight,
        sigma_data=self.denoiser.sigma_data, warmup=warmup,
        normalization=self.normalization if self.normalization > 0 else None)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'tangent_loss': jnp.mean(squared), 'weight': jnp.mean(weight),
                  'warmup': warmup}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    del teacher_params
    if num_steps - 1 > len(self.intermediate_times):
      raise ValueError(f'{num_steps}-step sampling needs {num_steps - 1} objective.'
                       f'intermediate_times; got {self.intermediate_times}')
    labels = denoiser_lib.conditioning_labels(self.student, labels)
    sigma_data, net = self.denoiser.sigma_data, params['student']['net']
    times = (trigflow.t_max(self.sigma_max, sigma_data),) + tuple(
        self.intermediate_times[:num_steps - 1])
    keys = jax.random.split(rng, num_steps)
    x0 = None
    for i, t in enumerate(times):
      z = sigma_data * jax.random.normal(keys[i], shape)
      x_t = z if x0 is None else trigflow.noisy(x0, z, jnp.full(shape[:1], t))
      x0 = self.student.consistency(net, x_t, jnp.full(shape[:1], t), labels)
    return x0


@dataclasses.dataclass(frozen=True)
class SCT(_SCM):
  """sCT: continuous-time consistency training from data alone; group 'student'."""

  def _dx_dt(self, teacher_params, x0, z, t, labels):
    del teacher_params, labels
    return trigflow.conditional_velocity(x0, z, t)


@dataclasses.dataclass(frozen=True)
class SCD(_SCM):
  """sCD: continuous-time consistency distillation of ``teacher``; group 'student'."""
  teacher: Any = None           # teacher(teacher_params, x, sigma, labels) -> x0_hat
  guidance_scale: float = 1.0   # classifier-free guidance of the teacher velocity (1: none)

  def _dx_dt(self, teacher_params, x0, z, t, labels):
    labels = denoiser_lib.conditioning_labels(self.teacher, labels)
    denoise = lambda x, sigma: denoiser_lib.guided(self.teacher, teacher_params, x, sigma, labels,
                                                   self.guidance_scale)
    return trigflow.teacher_velocity(denoise, trigflow.noisy(x0, z, t), t,
                                     self.denoiser.sigma_data)
