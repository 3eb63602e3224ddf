"""The one model interface every sampler and objective sees: ``D(params, x, sigma, labels)``.

A :class:`Denoiser` wraps a raw Flax network ``F(x_in, noise_cond, labels, train)`` with a
parameterization:

* ``'edm'``:  D = c_skip x + c_out F(c_in x; ln(sigma)/4)       (EDM Eq. 7, Table 1)
* ``'vp'``, ``'ve'``: the same with EDM Table 1's VP / VE coefficients (EDM ``VPPrecond``,
              ``VEPrecond``; :func:`fastgen.diffusion.vp_preconditioning`,
              :func:`fastgen.diffusion.ve_preconditioning`), for imported EDM networks.
* ``'flow'``: F predicts the rectified-flow velocity v(x_t, t) at x_t = x / (1 + sigma),
              t = sigma / (1 + sigma), and D = x_t - t v.           (Liu et al. 2022, Eq. 1)

Teachers that are not networks (``fastgen.teachers.analytic``) expose the same ``__call__`` and
``velocity``, so any teacher plugs into any sampler or rule. Labels are int32 class ids; the id
``num_classes`` is the null label (classifier-free guidance), which networks embed as zero.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastgen import diffusion, networks

PARAMETERIZATIONS = ('edm', 'vp', 've', 'flow')
FLOW_NOISE_SCALE = 1000.0  # c_noise = 1000 t for flow nets, the range positional embeddings expect.


@dataclasses.dataclass(frozen=True)
class Network:
  """A raw network ``F(x_in, noise_cond, labels, train)`` with its parameters kept outside;
  the base of every preconditioned model (:class:`Denoiser`, consistency functions)."""
  net: nn.Module

  @property
  def num_classes(self) -> int:
    return getattr(self.net, 'num_classes', 0)

  def init(self, rng, x, labels=None):
    """Parameters for inputs shaped like ``x`` (a batch)."""
    sigma = jnp.ones(x.shape[:1], jnp.float32)
    return self.net.init({'params': rng}, x, sigma, labels, train=False)['params']

  def _apply(self, params, x_in, noise_cond, labels, train, rng, with_features=False):
    """F(x_in, noise_cond, labels), or ``(F, features)`` with the array the network sows as
    ``('intermediates', 'features')`` (MLP trunk, U-Net bottleneck), or with ``with_features=
    'levels'`` the tuple it sows as ``('intermediates', 'level_features')``."""
    rngs = {'dropout': rng} if (train and rng is not None) else None
    if not with_features:
      return self.net.apply({'params': params}, x_in, noise_cond, labels, train=train, rngs=rngs)
    out, state = self.net.apply({'params': params}, x_in, noise_cond, labels, train=train,
                                rngs=rngs, mutable=['intermediates'])
    if with_features == 'levels':
      return out, tuple(state['intermediates']['level_features'])
    return out, state['intermediates']['features'][-1]


@dataclasses.dataclass(frozen=True)
class Denoiser(Network):
  """A raw network plus its preconditioning; hashable, so it can be a static jit argument."""
  parameterization: str = 'edm'
  sigma_data: float = 0.5

  def __post_init__(self):
    if self.parameterization not in PARAMETERIZATIONS:
      raise ValueError(f'unknown parameterization {self.parameterization!r}; '
                       f'known: {", ".join(PARAMETERIZATIONS)}')

  def __call__(self, params, x, sigma, labels=None, *, train=False, rng=None) -> jax.Array:
    """x0_hat = D(x, sigma) ~= E[x0 | x], for x = x0 + sigma eps and sigma of shape [B] or []."""
    return self._denoise(params, x, sigma, labels, train, rng, with_features=False)

  def with_features(self, params, x, sigma, labels=None, *, train=False, rng=None,
                    levels=False):
    """``(D(x, sigma), features)``: the denoiser and the network's sown features (the MLP's
    trunk [B, hidden], the U-Net's bottleneck [B, h, w, C]), from one network call. With
    ``levels`` the features are a tuple of one map per level, shallow to deep: each residual
    block's output of the MLP, the end of each encoder resolution of the U-Nets (the last of
    either is the map above)."""
    return self._denoise(params, x, sigma, labels, train, rng,
                         with_features='levels' if levels else True)

  def _denoise(self, params, x, sigma, labels, train, rng, with_features):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    if self.parameterization != 'flow':
      c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
      out = self._apply(params, diffusion.expand_like(c_in, x) * x, c_noise, labels, train, rng,
                        with_features)
      f, features = out if with_features else (out, None)
      x0_hat = (diffusion.expand_like(c_skip, x) * x +
                diffusion.expand_like(c_out, x) * f.astype(x.dtype))
    else:
      t = diffusion.sigma_to_flow_t(sigma)
      x_t = diffusion.edm_to_flow(x, sigma)
      out = self._apply(params, x_t, FLOW_NOISE_SCALE * t, labels, train, rng, with_features)
      v, features = out if with_features else (out, None)
      x0_hat = diffusion.velocity_to_x0(x_t, t, v.astype(x.dtype))
    return (x0_hat, features) if with_features else x0_hat

  def preconditioning(self, sigma):
    """(c_skip, c_out, c_in, c_noise) of D = c_skip x + c_out F(c_in x; c_noise) (EDM Eq. 7)."""
    if self.parameterization == 'vp':
      return diffusion.vp_preconditioning(sigma)
    if self.parameterization == 've':
      return diffusion.ve_preconditioning(sigma)
    return diffusion.edm_preconditioning(sigma, self.sigma_data)

  def velocity(self, params, x_t, t, labels=None, *, train=False, rng=None) -> jax.Array:
    """Rectified-flow velocity v(x_t, t) = eps - x0; exact at t = 1 for flow networks."""
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
    if self.parameterization == 'flow':
      return self._apply(params, x_t, FLOW_NOISE_SCALE * t, labels, train, rng).astype(x_t.dtype)
    return velocity_from_denoiser(self, params, x_t, t, labels, train=train, rng=rng)


def conditioning_labels(model: Any, labels):
  """The labels ``model`` is conditioned on: ``labels`` for a class-conditional model
  (``model.num_classes > 0``), None for an unconditional one (or a model without classes)."""
  return labels if getattr(model, 'num_classes', 0) else None


def uniform_labels(rng, batch_size: int, num_classes: int):
  """Class labels drawn uniformly from {0, ..., num_classes - 1}, or None when num_classes = 0."""
  return jax.random.randint(rng, (batch_size,), 0, num_classes) if num_classes else None


def velocity_from_denoiser(denoiser: Any, params, x_t, t, labels=None, *, train=False,
                           rng=None) -> jax.Array:
  """v(x_t, t) of any denoiser: x0 = D(x_t / (1 - t), t / (1 - t)), v = (x_t - x0) / t. Needs t < 1.
  ``train`` and ``rng`` (dropout) go to the denoiser."""
  x0 = denoiser(params, diffusion.flow_to_edm(x_t, t), diffusion.flow_t_to_sigma(t), labels,
                train=train, rng=rng)
  return diffusion.x0_to_velocity(x_t, t, x0)


def guided(denoiser: Any, params, x, sigma, labels, guidance_scale) -> jax.Array:
  """Classifier-free guidance (Ho & Salimans 2022, Eq. 6 in x0 form):
  D_w = D(x, sigma, null) + w (D(x, sigma, y) - D(x, sigma, null)); w = 1 is the plain model.
  ``guidance_scale`` is a number or one per example ([B]); conditional and unconditional calls
  run as one batch. (Meng et al. 2023 write the same D as (1 + w') D(y) - w' D(null), w' = w - 1.)"""
  if labels is None or (isinstance(guidance_scale, (int, float)) and guidance_scale == 1.0):
    return denoiser(params, x, sigma, labels)
  null = jnp.full_like(labels, denoiser.num_classes)
  both = denoiser(params, jnp.concatenate([x, x]), jnp.concatenate(
      [jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])] * 2),
      jnp.concatenate([labels, null]))
  cond, uncond = jnp.split(both, 2)
  scale = diffusion.expand_like(
      jnp.broadcast_to(jnp.asarray(guidance_scale, jnp.float32), x.shape[:1]), x)
  return uncond + scale * (cond - uncond)


def from_config(network_config) -> Denoiser:
  """A :class:`Denoiser` from a ``network`` config section: ``parameterization`` and
  ``sigma_data`` go to the wrapper, every other key to :func:`fastgen.networks.build_network`."""
  cfg = dict(network_config)
  parameterization = cfg.pop('parameterization', 'edm')
  sigma_data = cfg.pop('sigma_data', 0.5)
  return Denoiser(networks.build_network(cfg), parameterization, sigma_data)
