"""A toy coupling whose straight-line velocity is known in closed form, shared by the
rectified-flow objective tests (reflow, InstaFlow, SlimFlow).

Pairs (z, x0 = A z) with A = diag(a): on the line x_t = (1 - t) x0 + t z = ((1 - t) a + t) z the
straight-line conditional velocity z - x0 is a function of x_t alone,

  v*(x_t, t) = (1 - a) / ((1 - t) a + t) * x_t,

so a model equal to v* has reflow loss zero, its ODE's paths are straight, and one Euler step from
noise lands on A z.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from fastgen import diffusion

SCALES = np.array([2.0, 0.5])  # diag(A)


def exact_velocity(x_t, t):
  a = jnp.asarray(SCALES, x_t.dtype)
  t = diffusion.expand_like(t, x_t)
  return (1.0 - a) / ((1.0 - t) * a + t) * x_t


@dataclasses.dataclass(frozen=True)
class ScaledExactVelocity:
  """A 'network' with one parameter s: v = s v*. s = 1 is the exact straight-line velocity."""
  num_classes: int = 0

  def init(self, rng, x, labels=None):
    del rng, x, labels
    return {'scale': jnp.ones(())}

  def velocity(self, params, x_t, t, labels=None, *, train=False, rng=None):
    del labels, train, rng
    return params['scale'] * exact_velocity(x_t, t)


def coupling_batch(num=256, seed=0):
  noise = jax.random.normal(jax.random.key(seed), (num, 2))
  return {'x': noise * SCALES, 'noise': noise, 'label': jnp.zeros((num,), jnp.int32)}


@functools.cache
def _loss_and_grad_fn(objective, group):
  def loss(trained, params, batch, step):
    return objective.loss(group, {**params, group: trained}, None, None, batch,
                          jax.random.key(1), step)[0]
  return jax.jit(jax.value_and_grad(loss))


def loss_and_grad(objective, params, batch, step=0, group='student'):
  """The objective's loss at ``params`` and its derivative in the one scale parameter."""
  value, grad = _loss_and_grad_fn(objective, group)(params[group], params, batch, jnp.int32(step))
  return float(value), float(grad['scale'])


def with_scale(params, scale, group='student'):
  return {**params, group: {'scale': jnp.asarray(scale, jnp.float32)}}
