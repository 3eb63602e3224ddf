"""InstaFlow's one-step distillation of a (reflowed) flow (Liu et al. 2024, "InstaFlow: One Step
is Enough for High-Quality Diffusion-Based Text-to-Image Generation", ICLR 2024, §3.2, the
distillation objective after Algorithm 1's reflow).

The teacher is a velocity model, ideally a 2-rectified flow (a reflow run, loaded with
``teacher.kind='checkpoint'``); the student, initialised from it, takes one Euler step from noise
and is regressed onto the coupling's endpoint x0 = Phi_teacher(z):

  min_theta E_z [ m(G_theta(z), x0) ],   G_theta(z) = T z - T v_theta(T z, T),   T = T_MAX ~ 1,

m the metric (``objective.metric``) of :func:`fastgen.objectives.reflow.endpoint_loss`. Group
``'student'``. Sampling: 1 step is G; k > 1 Euler steps of v_theta.

Differences from the paper: pseudo-Huber by default in place of LPIPS ('lpips' needs
``lpips_weights``); class labels or none instead of text; k > 1 sampling steps are fastgen's
extension (the student is trained at t = T only).

Details: docs/rules/rectified_flows.md.
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
