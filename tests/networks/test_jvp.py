"""``jax.jvp`` through a real network equals a central finite difference: a tiny SongUNet with
self-attention, GroupNorm and dropout (a fixed key, so the same mask in every evaluation), as the
sCM and MeanFlow rules differentiate it along their ODE tangents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import networks, trigflow
from fastgen.objectives import meanflow

UNET = dict(name='unet', img_resolution=8, in_channels=1, model_channels=16, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[4], dropout=0.2)


def _random_params(init_fn):
  """Random parameters (norm scales near 1, the rest N(0, 0.1^2)): the near-zero output layers of
  a fresh init would make the check trivial."""
  shapes = jax.eval_shape(init_fn, jax.random.key(0))
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.asarray((path[-1].key == 'scale') + 0.1 * rng.normal(size=p.shape),
                                  jnp.float32), shapes)


def _check(fn, primals, tangents, tolerance):
  """jvp vs the Richardson-extrapolated central difference (4 d(h / 2) - d(h)) / 3,
  d(h) = (fn(p + h v) - fn(p - h v)) / 2h, in float32: the smallest error over steps h from 1e-1
  to 1e-4 (large h: truncation, small h: round-off), relative to max |jvp|."""
  out, jvp = jax.jit(lambda p, v: jax.jvp(fn, p, v))(primals, tangents)
  fn = jax.jit(fn)
  scale = float(jnp.max(jnp.abs(jvp)))
  assert scale > 1e-3 * float(jnp.max(jnp.abs(out)))  # a tangent that actually moves the output
  difference = lambda h: (fn(*(p + h * v for p, v in zip(primals, tangents))) -
                          fn(*(p - h * v for p, v in zip(primals, tangents)))) / (2 * h)
  errors = {h: float(jnp.max(jnp.abs((4 * difference(h / 2) - difference(h)) / 3 - jvp))) / scale
            for h in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)}
  h = min(errors, key=errors.get)
  print(f'relative error {errors[h]:.1e} at h = {h}')
  assert errors[h] < tolerance


@pytest.mark.parametrize('time_conditioning', ['log_sigma', 'trig'])
def test_trigflow_unet_jvp_matches_finite_difference(time_conditioning):
  net = trigflow.TrigFlowNetwork(networks.build_network(UNET), 0.5, time_conditioning)
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  params = _random_params(lambda key: net.init(key, x))
  t = jnp.array([0.3, 0.9, 1.4])
  dx = jax.random.normal(jax.random.key(2), x.shape)
  cs = jnp.cos(t) * jnp.sin(t)  # the sCM tangent (cos sin dx/dt, cos sin)
  fn = lambda x, t: net(params, x, t, train=True, rng=jax.random.key(3))
  # Measured: 1e-4 along x and for the sCM tangent; along t alone 2.3e-3 ('log_sigma', where
  # dF/dt is ~25x smaller than F, so float32 round-off of the difference dominates) and 3e-4
  # ('trig'). A missing term of the tangent (e.g. through c_noise(t)) is an O(1) error.
  _check(fn, (x, t), (cs[:, None, None, None] * dx, jnp.zeros_like(t)), 1e-3)
  _check(fn, (x, t), (jnp.zeros_like(x), cs), 1e-2)
  _check(fn, (x, t), (cs[:, None, None, None] * dx, cs), 1e-3)


def test_two_time_unet_jvp_matches_finite_difference():
  student = meanflow.AverageVelocity(networks.build_network(UNET))
  z = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  params = _random_params(lambda key: student.init(key, z))
  r, t = jnp.array([0.1, 0.5, 0.7]), jnp.array([0.4, 0.5, 0.95])
  v = jax.random.normal(jax.random.key(2), z.shape)
  fn = lambda z, r, t: student(params, z, r, t, train=True, rng=jax.random.key(3))
  zeros, ones = jnp.zeros_like(t), jnp.ones_like(t)
  for tangents in ((v, zeros, zeros), (jnp.zeros_like(z), ones, zeros), (v, zeros, ones)):
    _check(fn, (z, r, t), tangents, 2e-3)  # along z, along r, MeanFlow's (v, 0, 1)
  # Measured: 7e-5, 2e-4, 1.3e-4.
