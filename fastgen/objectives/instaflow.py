"""InstaFlow's one-step distillation of a (reflowed) flow (Liu et al. 2024, "InstaFlow: One Step
is Enough for High-Quality Diffusion-Based Text-to-Image Generation", ICLR 2024, §3.2, the
distillation objective after Algorithm 1's reflow).

The teacher is a velocity model, ideally a 2-rectified flow (a reflow run, loaded with
``teacher.kind='checkpoint'``); the student, initialised from it, takes one Euler step from noise
and is regressed onto the coupling's endpoint x0 = Phi_teacher(z):

  min_theta E_z [ m(G_theta(z), x0) ],   G_theta(z) = T z - T v_theta(T z, T),   T = 1 - 1e-3,

m the metric (``objective.metric``) of :func:`fastgen.objectives.reflow.endpoint_loss`, T =
``t_start`` the official code's (RectifiedFlow ``losses.py``, ``reflow_t_schedule='t0'``: its time
eps = 1e-3 is 1 - 1e-3 in fastgen's direction; for an EDM-preconditioned network sigma = T / (1 - T)
= 999, not the 1e5 of t = 1 - 1e-5). Group ``'student'``. Sampling: 1 step is G; k > 1 Euler steps
of v_theta from t = T.

Differences from the paper and the official code: pseudo-Huber by default in place of LPIPS
('lpips' needs ``lpips_weights``); class labels or none instead of text; the network's input is
x_T = T z and the step T, where the official feeds z (sampling) or (1 - eps) z + eps x0 (training)
and steps 1 (a 1e-3 relative difference, here the exact marginal at t = T); k > 1 sampling steps
are fastgen's extension (the student is trained at t = T only).

Details: docs/rules/rectified_flows.md.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen.objectives import reflow


T_START = 1.0 - 1e-3  # the official one-step time (RectifiedFlow: eps = 1e-3)


def one_step(velocity_fn, noise, t_start: float):
  """G(z) = T z - T v(T z, T): one Euler step of dx/dt = v from t = T = ``t_start`` to 0."""
  t = jnp.full(noise.shape[:1], t_start)
  x_t = t_start * noise
  return x_t - t_start * velocity_fn(x_t, t)


@dataclasses.dataclass(frozen=True)
class InstaFlow(reflow.CouplingStudent):
  """One-step distillation of the teacher's ODE coupling; group 'student' (a velocity model)."""
  t_start: float = T_START      # where the one step starts (official 1 - 1e-3)

  def __post_init__(self):
    super().__post_init__()
    if not 0.0 < self.t_start < 1.0:
      raise ValueError(f'objective.t_start={self.t_start}: need 0 < t_start < 1')

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_pair, key_dropout = jax.random.split(rng)
    noise, x0, labels = reflow.coupling_batch(self, teacher_params, batch, key_pair)
    x0_hat = one_step(lambda x, t: self.denoiser.velocity(
        params['student'], x, t, labels, train=True, rng=key_dropout), noise, self.t_start)
    loss = jnp.mean(reflow.endpoint_loss(self.metric, params, x0_hat, x0,
                                         self.lpips_resolution, self.lpips_pooling))
    return loss, {'loss': loss}

  @property
  def ode_start(self) -> float:
    """Sampling starts where the one step does: 1 step is G, k > 1 Euler steps from t_start."""
    return self.t_start
