"""Deterministic ODE samplers over the one denoiser interface.

Every sampler takes ``denoise_fn(x, sigma) -> x0_hat`` (a closure over params, labels and guidance,
see :func:`denoise_closure`) or, for flow models, ``velocity_fn(x_t, t)``. They are pure functions of
their inputs: jit them at the call site, and the same key gives the same samples.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from fastgen import diffusion
from fastgen import denoiser as denoiser_lib

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def denoise_closure(denoiser, params, labels=None, guidance_scale=1.0) -> DenoiseFn:
  """``(x, sigma) -> D_w(x, sigma, labels)`` with classifier-free guidance scale w."""
  return lambda x, sigma: denoiser_lib.guided(denoiser, params, x, sigma, labels, guidance_scale)


def ddim_step(x, x0_hat, sigma, sigma_next):
  """Deterministic DDIM / probability-flow Euler step in sigma space (Song et al. 2021a, Eq. 12,
  rewritten in EDM variables; EDM Eq. 4 with s = 1):  x' = x0_hat + sigma' (x - x0_hat) / sigma."""
  return x0_hat + diffusion.expand_like(sigma_next / sigma, x) * (x - x0_hat)


def _sigma_vector(sigma, x):
  return jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])


def euler_sampler(denoise_fn: DenoiseFn, noise, sigmas):
  """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (EDM Eq. 3).

  ``noise`` is standard normal; the walk starts at ``sigmas[0] * noise`` and ends at ``sigmas[-1]``
  (0 for a sample). NFE = len(sigmas) - 1. Identical to deterministic DDIM on the same grid.
  """
  def step(x, pair):
    sigma, sigma_next = pair
    return ddim_step(x, denoise_fn(x, _sigma_vector(sigma, x)), sigma, sigma_next), None
  x, _ = jax.lax.scan(step, noise * sigmas[0], (sigmas[:-1], sigmas[1:]))
  return x


def heun_sampler(denoise_fn: DenoiseFn, noise, sigmas):
  """EDM Algorithm 1 (deterministic Heun, 2nd order); the last step to sigma = 0 is Euler.

  NFE = 2 (len(sigmas) - 1) - 1 when sigmas ends at 0.
  """
  def step(x, pair):
    sigma, sigma_next = pair
    d = (x - denoise_fn(x, _sigma_vector(sigma, x))) / sigma
    x_euler = x + (sigma_next - sigma) * d

    def correct(x_euler):
      d_next = (x_euler - denoise_fn(x_euler, _sigma_vector(sigma_next, x))) / sigma_next
      return x + (sigma_next - sigma) * 0.5 * (d + d_next)

    return jax.lax.cond(sigma_next > 0, correct, lambda x_e: x_e, x_euler), None
  x, _ = jax.lax.scan(step, noise * sigmas[0], (sigmas[:-1], sigmas[1:]))
  return x


def flow_euler_sampler(velocity_fn, noise, ts):
  """Euler on the rectified-flow ODE dx_t/dt = v(x_t, t) (Liu et al. 2022, Eq. 1), from x_1 = noise
  down the decreasing grid ``ts`` (e.g. linspace(1, 0, n + 1)); NFE = len(ts) - 1."""
  def step(x_t, pair):
    t, t_next = pair
    return x_t + (t_next - t) * velocity_fn(x_t, _sigma_vector(t, x_t)), None
  x, _ = jax.lax.scan(step, noise, (ts[:-1], ts[1:]))
  return x


def flow_euler(velocity_fn, noise, num_steps: int, t_start: float):
  """``num_steps`` Euler steps of dx/dt = v(x, t) from x = T z at t = T = ``t_start`` down a
  uniform grid to t = 0 (:func:`flow_euler_sampler`)."""
  return flow_euler_sampler(velocity_fn, t_start * noise,
                            jnp.linspace(t_start, 0.0, num_steps + 1))


def multistep_sigmas(num_steps: int, sigma_min, sigma_start, rho):
  """sigma_0 = sigma_start > ... > sigma_{k-1}: the first k = ``num_steps`` points of the
  (k + 1)-point Karras grid (EDM Eq. 5) from sigma_start to sigma_min, sigma_0 exactly
  sigma_start."""
  sigmas = diffusion.karras_sigmas(num_steps + 1, sigma_min, sigma_start, rho)[:num_steps]
  return sigmas.at[0].set(sigma_start)


def multistep_sample(one_step_fn, rng, shape, sigmas, sigma_out=0.0):
  """Multistep consistency sampling (Song et al. 2023, Algorithm 1) with any map to data
  ``one_step_fn(x, sigma) -> x0_hat`` (a consistency function, a one-step generator):

    x = f(sigma_0 z_0, sigma_0),   x = f(x + sqrt(sigma_i^2 - sigma_out^2) z_i, sigma_i),

  for i = 1 .. len(sigmas) - 1, z_i ~ N(0, I); sigma_out is the noise level f's outputs carry
  (Algorithm 1's epsilon = sigma_min for a consistency function, 0 for a denoiser)."""
  keys = jax.random.split(rng, len(sigmas))
  x = one_step_fn(sigmas[0] * jax.random.normal(keys[0], shape), sigmas[0])
  for i in range(1, len(sigmas)):
    noise = jnp.sqrt(sigmas[i] ** 2 - sigma_out**2) * jax.random.normal(keys[i], shape)
    x = one_step_fn(x + noise, sigmas[i])
  return x


SAMPLERS = {'euler': euler_sampler, 'heun': heun_sampler}


def sample(denoiser, params, rng, shape, *, method='heun', num_steps=18, labels=None,
           guidance_scale=1.0, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """Draw ``shape`` samples from any denoiser with a named sampler.

  ``method``: 'heun' / 'euler' on the Karras grid (EDM Eq. 5), 'ddim' (Euler on the VP time grid),
  or 'flow_euler' (uniform grid in rectified-flow time t).
  """
  noise = jax.random.normal(rng, shape)
  if method == 'flow_euler':
    velocity_fn = lambda x_t, t: denoiser.velocity(params, x_t, t, labels)
    return flow_euler(velocity_fn, noise, num_steps, 1.0)
  fn = denoise_closure(denoiser, params, labels, guidance_scale)
  if method == 'ddim':
    return euler_sampler(fn, noise, diffusion.vp_sigmas(num_steps))
  if method not in SAMPLERS:
    raise ValueError(f'unknown sampler {method!r}; known: {", ".join([*SAMPLERS, "ddim", "flow_euler"])}')
  sigmas = diffusion.karras_sigmas(num_steps, sigma_min, sigma_max, rho)
  return SAMPLERS[method](fn, noise, sigmas)
