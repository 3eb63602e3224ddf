"""One language for noise: EDM's sigma parameterization and conversions into it.

Inside fastgen every noisy sample is ``x = x0 + sigma * eps`` (Karras et al. 2022, "Elucidating
the Design Space of Diffusion-Based Generative Models", EDM) and every model is a denoiser
``D(x, sigma) ~= E[x0 | x]``. Variance-preserving models and flow-matching / rectified-flow models
are converted to and from this form here, and nowhere else.
"""

import jax
import jax.numpy as jnp


def edm_preconditioning(sigma, sigma_data):
  """EDM Table 1: (c_skip, c_out, c_in, c_noise) for D = c_skip x + c_out F(c_in x; c_noise).

  c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
  c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4.
  """
  total = sigma**2 + sigma_data**2
  c_skip = sigma_data**2 / total
  c_out = sigma * sigma_data * jax.lax.rsqrt(total)
  c_in = jax.lax.rsqrt(total)
  c_noise = jnp.log(sigma) / 4.0
  return c_skip, c_out, c_in, c_noise


VP_BETA_D, VP_BETA_MIN, VP_M = 19.9, 0.1, 1000  # EDM VPPrecond defaults (Song et al. 2021's VP SDE)


def vp_sigma_inv(sigma, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN):
  """EDM Table 1, VP: t = sigma^-1(sigma) = (sqrt(beta_min^2 + 2 beta_d ln(sigma^2 + 1)) - beta_min)
  / beta_d, the inverse of :func:`vp_sigma`."""
  return (jnp.sqrt(beta_min**2 + 2.0 * beta_d * jnp.log1p(sigma**2)) - beta_min) / beta_d


def vp_preconditioning(sigma, beta_d=VP_BETA_D, beta_min=VP_BETA_MIN, num_timesteps=VP_M):
  """EDM Table 1, VP column (EDM ``VPPrecond``): c_skip = 1, c_out = -sigma,
  c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) sigma^-1(sigma): D = x - sigma F, F ~= eps."""
  c_noise = (num_timesteps - 1) * vp_sigma_inv(sigma, beta_d, beta_min)
  return jnp.ones_like(sigma), -sigma, jax.lax.rsqrt(sigma**2 + 1.0), c_noise


def ve_preconditioning(sigma):
  """EDM Table 1, VE column (EDM ``VEPrecond``): c_skip = 1, c_out = sigma, c_in = 1,
  c_noise = ln(sigma / 2): D = x + sigma F, F ~= -eps."""
  return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(0.5 * sigma)


def edm_loss_weight(sigma, sigma_data):
  """EDM Eq. 8 / Table 1: lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 = 1 / c_out^2."""
  return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_lognormal_sigma(rng, shape, p_mean=-1.2, p_std=1.2):
  """EDM Table 1 training distribution: ln(sigma) ~ N(P_mean, P_std^2)."""
  return jnp.exp(p_mean + p_std * jax.random.normal(rng, shape))


def karras_sigma(u, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """EDM Eq. 5 read continuously:
  sigma(u) = (s_min^(1/rho) + u (s_max^(1/rho) - s_min^(1/rho)))^rho,
  so u = 0 is sigma_min and u = 1 is sigma_max; Eq. 5's i-th of N points is u = 1 - i / (N - 1)."""
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (lo + u * (hi - lo)) ** rho


def sample_karras_sigma(rng, shape, u_min, u_max, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """sigma = :func:`karras_sigma` (u) for u ~ U[u_min, u_max]: DMD's t ~ U[0.02 T, 0.98 T] and
  SiD's t ~ U[0, tmax / 1000] (official codes) on EDM's grid read continuously."""
  return karras_sigma(jax.random.uniform(rng, shape, minval=u_min, maxval=u_max), sigma_min,
                      sigma_max, rho)


def karras_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """EDM Eq. 5: sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, the
  :func:`karras_sigma` of u = 1 - i / (N - 1), for i = 0 .. N - 1 with N = ``num_steps``.

  Returns ``num_steps + 1`` decreasing values; the last is 0 (the final step lands on data).
  """
  if num_steps < 1:
    raise ValueError(f'num_steps must be >= 1, got {num_steps}')
  if num_steps == 1:
    return jnp.array([sigma_max, 0.0])
  u = 1.0 - jnp.arange(num_steps) / (num_steps - 1)
  return jnp.append(karras_sigma(u, sigma_min, sigma_max, rho), 0.0)


def expand_like(v, x):
  """Broadcast a per-example vector ``v`` of shape [B] against ``x`` of shape [B, ...]."""
  v = jnp.asarray(v, x.dtype)
  if v.ndim == 0:
    return v
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def add_noise(rng, x, sigma):
  """x + sigma eps, eps ~ N(0, I) drawn from ``rng``; ``sigma`` a scalar or per-example [B]."""
  return x + expand_like(sigma, x) * jax.random.normal(rng, x.shape)


# ---------------------------------------------------------------- variance preserving (DDPM/VP)


def vp_sigma(t, beta_min=0.1, beta_d=19.9):
  """EDM Table 1, VP schedule: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
  return jnp.sqrt(jnp.expm1(0.5 * beta_d * t**2 + beta_min * t))


def vp_sigmas(num_steps, eps_s=1e-3, beta_min=0.1, beta_d=19.9):
  """DDIM-style time grid: t uniform on [1, eps_s], mapped through the VP sigma(t); ends at 0."""
  t = jnp.linspace(1.0, eps_s, num_steps)
  return jnp.append(vp_sigma(t, beta_min, beta_d), 0.0)


# ------------------------------------------------------------ flow matching / rectified flow


def flow_t_to_sigma(t):
  """Rectified flow x_t = (1 - t) x0 + t eps  <=>  x_t / (1 - t) has sigma = t / (1 - t)."""
  return t / (1.0 - t)


def sigma_to_flow_t(sigma):
  """Inverse of :func:`flow_t_to_sigma`: t = sigma / (1 + sigma)."""
  return sigma / (1.0 + sigma)


FLOW_TIME_DISTRIBUTIONS = ('uniform', 'logit_normal', 'u_shaped')


def sample_flow_time(rng, shape, distribution: str, t_min: float, t_max: float,
                     u_shape_a: float = 4.0):
  """Training times t = t_min + (t_max - t_min) s of rectified flow / flow matching, with s from
  'uniform' U[0, 1); 'logit_normal' sigmoid(N(0, 1)) (Esser et al. 2024, Eq. 19); or 'u_shaped'
  p(s) ∝ exp(a s) + exp(a (1 - s)) (Lee et al. 2024, §4.1): s = log(1 + u (e^a - 1)) / a, the
  inverse CDF of p ∝ e^(a s), reflected to 1 - s with probability 1/2."""
  key, key_flip = jax.random.split(rng)
  if distribution == 'uniform':
    s = jax.random.uniform(key, shape)
  elif distribution == 'logit_normal':
    s = jax.nn.sigmoid(jax.random.normal(key, shape))
  elif distribution == 'u_shaped':
    s = jnp.log1p(jax.random.uniform(key, shape) * jnp.expm1(u_shape_a)) / u_shape_a
    s = jnp.where(jax.random.bernoulli(key_flip, 0.5, shape), s, 1.0 - s)
  else:
    raise ValueError(f'unknown objective.time_distribution {distribution!r}; known: '
                     f'{", ".join(FLOW_TIME_DISTRIBUTIONS)}')
  return t_min + (t_max - t_min) * s


def flow_interpolate(x0, noise, t):
  """Liu et al. 2022, Eq. 1 in fastgen's convention: x_t = (1 - t) x0 + t z (t = 1 is noise)."""
  t = expand_like(t, x0)
  return (1.0 - t) * x0 + t * noise


def flow_to_edm(x_t, t):
  """x = x_t / (1 - t): the EDM-space sample with sigma = t / (1 - t)."""
  return x_t / (1.0 - expand_like(t, x_t))


def edm_to_flow(x, sigma):
  """x_t = x / (1 + sigma) = (1 - t) x: the flow-space sample at t = sigma / (1 + sigma)."""
  return x / (1.0 + expand_like(sigma, x))


def velocity_to_x0(x_t, t, velocity):
  """For x_t = (1 - t) x0 + t eps and v = eps - x0:  x0 = x_t - t v."""
  return x_t - expand_like(t, x_t) * velocity


def x0_to_velocity(x_t, t, x0):
  """For x_t = (1 - t) x0 + t eps:  v = eps - x0 = (x_t - x0) / t."""
  return (x_t - x0) / expand_like(t, x_t)
