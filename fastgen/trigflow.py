"""TrigFlow (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency
Models", arXiv:2410.11081, §3 "Simplifying continuous-time consistency models") and its exact
conversions to and from EDM's sigma language.

Convention (the paper's): data x0 has standard deviation ~sigma_d and is NOT rescaled; the noise
z = sigma_d eps has the same scale, eps ~ N(0, I); t in [0, pi/2]:

  x_t = cos(t) x0 + sin(t) z,                                 (§3, TrigFlow forward process)
  v_t = dx_t/dt = cos(t) z - sin(t) x0,                       (the conditional velocity)
  dx_t/dt = sigma_d F(x_t / sigma_d, t),                      (§3, the PF-ODE of a TrigFlow model)
  f(x_t, t) = cos(t) x_t - sin(t) sigma_d F(x_t / sigma_d, t) (§3, the consistency function).

Conversions (exact; "EDM" is x = x0 + sigma eps, Karras et al. 2022, Eq. 1):

  sigma = sigma_d tan(t),     t = arctan(sigma / sigma_d),
  x_edm = x_t / cos(t),       x_t = cos(t) x_edm = sigma_d x_edm / sqrt(sigma^2 + sigma_d^2).

Hence any denoiser D(x, sigma) ~= E[x0 | x] gives the TrigFlow PF-ODE velocity

  E[v_t | x_t] = cos(t) E[z | x_t] - sin(t) E[x0 | x_t] = (cos(t) x_t - D(x_t / cos t, sigma_d tan t)) / sin(t),

and back, D = cos(t) x_t - sin(t) dx_t/dt. For an EDM-preconditioned network (EDM Table 1),
c_in x_edm = x_t / sigma_d, c_skip = cos^2(t), c_out = sigma_d sin(t), so dx_t/dt = -sigma_d F_edm:
an EDM network *is* a TrigFlow network F = -F_edm(x_t / sigma_d; ln(sigma_d tan t) / 4) (the
paper's remark in §3), which is how :class:`TrigFlowNetwork` starts from an EDM teacher exactly.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp

from fastgen import diffusion
from fastgen.denoiser import FLOW_NOISE_SCALE, Network

TIME_CONDITIONINGS = ('log_sigma', 'trig')


def sigma_of(t, sigma_data):
  """EDM noise level of TrigFlow time t: sigma = sigma_d tan(t)."""
  return sigma_data * jnp.tan(t)


def time_of(sigma, sigma_data):
  """TrigFlow time of an EDM noise level: t = arctan(sigma / sigma_d) (inverse of :func:`sigma_of`)."""
  return jnp.arctan2(sigma, sigma_data)


def to_edm(x_t, t):
  """x_edm = x_t / cos(t): the EDM sample x0 + sigma eps with sigma = sigma_d tan(t)."""
  return x_t / jnp.cos(diffusion.expand_like(t, x_t))


def from_edm(x, sigma, sigma_data):
  """x_t = cos(t) x_edm = sigma_d x_edm / sqrt(sigma^2 + sigma_d^2) (inverse of :func:`to_edm`)."""
  return x * sigma_data * jax.lax.rsqrt(diffusion.expand_like(sigma, x) ** 2 + sigma_data**2)


def noisy(x0, z, t):
  """x_t = cos(t) x0 + sin(t) z for z ~ N(0, sigma_d^2 I)."""
  t = diffusion.expand_like(t, x0)
  return jnp.cos(t) * x0 + jnp.sin(t) * z


def conditional_velocity(x0, z, t):
  """v_t = d/dt [cos(t) x0 + sin(t) z] = cos(t) z - sin(t) x0 (sCT's dx_t/dt)."""
  t = diffusion.expand_like(t, x0)
  return jnp.cos(t) * z - jnp.sin(t) * x0


def velocity_from_x0(x_t, t, x0_hat):
  """PF-ODE velocity from a posterior mean: dx_t/dt = (cos(t) x_t - x0_hat) / sin(t); t > 0."""
  t = diffusion.expand_like(t, x_t)
  return (jnp.cos(t) * x_t - x0_hat) / jnp.sin(t)


def x0_from_velocity(x_t, t, velocity):
  """Posterior mean from the PF-ODE velocity: x0_hat = cos(t) x_t - sin(t) dx_t/dt; this is also
  the consistency function f = cos(t) x_t - sin(t) sigma_d F with velocity = sigma_d F."""
  t = diffusion.expand_like(t, x_t)
  return jnp.cos(t) * x_t - jnp.sin(t) * velocity


def teacher_velocity(denoise_fn, x_t, t, sigma_data):
  """dx_t/dt of any fastgen denoiser ``denoise_fn(x, sigma)``, through the exact conversion:
  (cos(t) x_t - D(x_t / cos t, sigma_d tan t)) / sin(t), for 0 < t < pi/2."""
  t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype), x_t.shape[:1])
  return velocity_from_x0(x_t, t, denoise_fn(to_edm(x_t, t), sigma_of(t, sigma_data)))


def t_max(sigma_max, sigma_data):
  """The paper's sampling start t_max = arctan(sigma_max / sigma_d) (1.56454 for 80 and 0.5)."""
  return math.atan2(sigma_max, sigma_data)


@dataclasses.dataclass(frozen=True)
class TrigFlowNetwork(Network):
  """F(params, x_t, t, labels) = -net(x_t / sigma_d; c_noise(t)), the raw network in TrigFlow's
  parameterization; ``x_t`` is the unscaled TrigFlow sample (the 1 / sigma_d is applied here).

  ``time_conditioning``: 'log_sigma' feeds EDM's c_noise = ln(sigma_d tan t) / 4, so an
  EDM-parameterized network's weights are this network exactly (module docstring); 'trig' feeds
  1000 t (the paper's TrigFlow time conditioning, scaled to the range the positional embeddings
  expect, like fastgen's flow networks). The sign is a convention that makes the EDM case exact.
  """
  sigma_data: float = 0.5
  time_conditioning: str = 'log_sigma'

  def __post_init__(self):
    if self.time_conditioning not in TIME_CONDITIONINGS:
      raise ValueError(f'unknown time_conditioning {self.time_conditioning!r}; known: '
                       f'{", ".join(TIME_CONDITIONINGS)}')

  def noise_cond(self, t):
    """c_noise(t) of :class:`TrigFlowNetwork`."""
    if self.time_conditioning == 'log_sigma':
      return jnp.log(sigma_of(t, self.sigma_data)) / 4.0
    return FLOW_NOISE_SCALE * t

  def __call__(self, params, x_t, t, labels=None, *, train=False, rng=None):
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
    out = self._apply(params, x_t / self.sigma_data, self.noise_cond(t), labels, train, rng)
    return -out.astype(x_t.dtype)

  def consistency(self, params, x_t, t, labels=None, *, train=False, rng=None):
    """f(x_t, t) = cos(t) x_t - sin(t) sigma_d F(x_t / sigma_d, t); f(x, 0) = x exactly."""
    velocity = self.sigma_data * self(params, x_t, t, labels, train=train, rng=rng)
    return x0_from_velocity(x_t, jnp.broadcast_to(jnp.asarray(t, x_t.dtype), x_t.shape[:1]),
                            velocity)
