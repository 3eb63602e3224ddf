"""InstaFlow's one-step distillation of a (reflowed) flow (Liu et al. 2024, "InstaFlow: One Step
is Enough for High-Quality Diffusion-Based Text-to-Image Generation", ICLR 2024, §3.2, the
distillation objective after Algorithm 1's reflow).

The teacher is a velocity model, ideally a 2-rectified flow (a :mod:`~fastgen.objectives.reflow`
run, loaded with ``teacher.kind='checkpoint'``), whose ODE pairs (z, x0 = Phi_teacher(z)) are
nearly a straight map. The student, initialised from the teacher, takes one Euler step from noise,

  x0_hat = G_theta(z) = T z - T v_theta(T z, T),   T = T_MAX ~ 1,

and is regressed onto the pair's endpoint: min_theta E_z [ m(G_theta(z), x0) ], with the premetric
m of :func:`fastgen.objectives.reflow.endpoint_loss`: the paper's LPIPS ('lpips', weights read
from ``lpips_weights``), 'lpips_huber', 'l2' or the default 'pseudo_huber'. The one-step loss is zero exactly when G_theta = Phi_teacher
on the coupling. Sampling: 1 step is G; k > 1 Euler steps of v_theta (an extension: the student is
trained at t = T only, so later steps rely on what it kept of the teacher).
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen.objectives import reflow


def one_step(velocity_fn, noise):
  """G(z) = T z - T v(T z, T): one Euler step of dx/dt = v from t = T_MAX to 0."""
  t = jnp.full(noise.shape[:1], reflow.T_MAX)
  x_t = reflow.T_MAX * noise
  return x_t - reflow.T_MAX * velocity_fn(x_t, t)


@dataclasses.dataclass(frozen=True)
class InstaFlow(reflow.CouplingStudent):
  """One-step distillation of the teacher's ODE coupling; group 'student' (a velocity model)."""

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_pair, key_dropout = jax.random.split(rng)
    noise, x0, labels = reflow.coupling_batch(self, teacher_params, batch, key_pair)
    x0_hat = one_step(lambda x, t: self.denoiser.velocity(
        params['student'], x, t, labels, train=True, rng=key_dropout), noise)
    loss = jnp.mean(reflow.endpoint_loss(self.metric, params, x0_hat, x0,
                                         self.lpips_resolution))
    return loss, {'loss': loss}
