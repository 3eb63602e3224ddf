"""Straightness of a flow's ODE trajectories (Liu et al. 2022, "Flow Straight and Fast", §2.2:
S(Z) = int_0^1 E || (Z_1 - Z_0) - dZ_t/dt ||^2 dt, zero exactly when every trajectory is a
straight line traversed at constant speed, so that one Euler step is exact).

Estimated along the model's own Euler trajectory on a uniform grid of ``num_steps`` steps from
t = t_max (x = t_max z) to t = 0: S ~ (1/N) sum_i mean_d ((x_start - x_end) / t_max - v_i)^2,
with v_i the velocity at step i; averaged over examples and, as in the rfpp code's
``straightness`` (github.com/sangyun884/rfpp, ``utils.py``), over dimensions, so that images and
2-D points read alike.
"""

import jax
import jax.numpy as jnp


def straightness(velocity_fn, noise, num_steps: int, t_max: float):
  """S of the ODE dx/dt = velocity_fn(x, t) started at x = t_max z (``noise`` z [B, ...])."""
  ts = jnp.linspace(t_max, 0.0, num_steps + 1)

  def step(x, pair):
    t, t_next = pair
    v = velocity_fn(x, jnp.broadcast_to(t, x.shape[:1]))
    return x + (t_next - t) * v, v

  start = t_max * noise
  end, velocities = jax.lax.scan(step, start, (ts[:-1], ts[1:]))
  displacement = (start - end) / t_max
  return jnp.mean((displacement[None] - velocities) ** 2)
