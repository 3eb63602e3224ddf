"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling", arXiv:2505.13447).

Flow path z_t = (1 - t) x + t e, e ~ N(0, I), conditional velocity v = e - x (§3, Eq. 1-2). The
network models the average velocity over [r, t] (Eq. 3),

  u(z_t, r, t) = 1 / (t - r) int_r^t v(z_tau, tau) dtau,

which satisfies the MeanFlow identity (Eq. 6) u = v - (t - r) du/dt with the total derivative
du/dt = v d_z u + d_t u (Eq. 8), one forward-mode product jvp(u, (z, r, t), (v, 0, 1)) computed by
``jax.jvp`` through the network (its primal output is u_theta itself, so one call gives both).
The loss (Eq. 9-10):

  L = E || u_theta(z_t, r, t) - sg(u_tgt) ||^2,   u_tgt = v - (t - r) (v d_z u_theta + d_t u_theta),

with the adaptive loss weighting of §4.3 / Appendix: w = sg(1 / (||Delta||^2 + c)^p), L = w ||Delta||^2,
Delta = u_theta - u_tgt (p = 0 is the plain squared L2). (r, t): two logit-normal draws
sigmoid(N(mu, s^2)) sorted so that t >= r, then r = t for a fraction 1 - ``ratio_r_neq_t`` of the
batch (where r = t the target is the instantaneous velocity: flow matching). Sampling (Eq. 12):
z_r = z_t - (t - r) u(z_t, r, t); one step z_0 = z_1 - u(z_1, 0, 1).

The second time input: the network embeds (t, t - r) (the paper's best positional input, Table 1c)
as two columns of ``noise_cond`` (s t, s (t - r)), each with its own positional embedding
concatenated before the mapping layers (:func:`fastgen.networks.unet.embed_times`), so the MLP
and SongUNet need no other change. s = ``time_scale`` = 1 by default: with fastgen's flow-network
scale s = 1000 the JVP's d_t u sees the embedding's fastest frequencies and the 1-step FD on
gmm2d stalled at 0.05-0.07 (0.009 with s = 1 at 2000 steps).

Classifier-free guidance, trained in (§4.2 and its Appendix; the official code's
``MeanFlow.guidance_fn`` and ``cond_drop``, github.com/Gsunshine/meanflow, meanflow.py): the
network learns the average velocity of the guided field v_cfg(z, t | c) = omega v(z, t | c) +
(1 - omega) v(z, t | null), whose sampling stays one step (1 NFE, no guidance at inference). As
u(z, t, t) = v(z, t), the unconditional field is read off the network itself, and the Appendix
adds a mixing scale kappa with the class-conditional u; v is replaced by

  v_tilde = omega (e - x) + kappa sg(u_theta(z_t, t, t | c))
            + (1 - omega - kappa) sg(u_theta(z_t, t, t | null)),

both in the target and as the JVP tangent: u_tgt = v_tilde - (t - r) jvp(u_theta, (z, r, t),
(v_tilde, 0, 1)). The effective guidance scale is omega' = omega / (1 - kappa); omega = 1,
kappa = 0 is the unguided loss. v_tilde is used only for t in [``guidance_t_min``,
``guidance_t_max``] (omega = 1, kappa = 0 outside). A fraction ``label_dropout`` of the labels
becomes the null label; those examples keep v = e - x, so the network learns the unconditional
u it is guided by. The official runs: ImageNet B/4 omega = 1, kappa = 0.5, t in [0, 1], drop
0.1 (configs/default.py); NVIDIA FastGen's DiT-XL config (34f30e8,
configs/experiments/DiT/config_mf_xl.py) omega = 0.2, kappa = 0.92, t in [0, 0.75] (omega' = 2.5).

Differences from the official code: the paper's defaults on ImageNet are mu = -0.4, s = 1.0,
ratio 0.25, p = 1, c = 1e-3 (Table 1, Appendix), taken as defaults here; the loss sums
||Delta||^2 over dimensions (the weighting then reads it on the same scale). CFG: the null
label embeds as zero (fastgen's networks) instead of a learned embedding; each label is dropped
independently, where the official code drops a Binomial(B, 0.1) count of the first examples of
the batch, which fall among its r = t (flow-matching) examples, also placed first.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion
from fastgen.denoiser import FLOW_NOISE_SCALE, Denoiser, Network
from fastgen.objectives import base


@dataclasses.dataclass(frozen=True)
class AverageVelocity(Network):
  """u(params, z, r, t, labels) = net(z; (s t, s (t - r)), labels), s = ``time_scale``."""
  time_scale: float = FLOW_NOISE_SCALE

  def init(self, rng, x, labels=None):
    times = jnp.ones(x.shape[:1] + (2,), jnp.float32)
    return self.net.init({'params': rng}, x, times, labels, train=False)['params']

  def __call__(self, params, z, r, t, labels=None, *, train=False, rng=None):
    r, t = (jnp.broadcast_to(jnp.asarray(a, jnp.float32), z.shape[:1]) for a in (r, t))
    times = self.time_scale * jnp.stack([t, t - r], axis=1)
    return self._apply(params, z, times, labels, train, rng).astype(z.dtype)


TIME_DISTRIBUTIONS = ('logit_normal', 'uniform')


def sample_times(rng, shape, mu, sigma, ratio_r_neq_t, distribution='logit_normal'):
  """(r, t): r <= t, the sorted pair of two draws of sigmoid(N(mu, sigma^2)) (or U(0, 1), the
  paper's other sampler, Table 1); r = t for a fraction 1 - ``ratio_r_neq_t``."""
  key_a, key_b, key_eq = jax.random.split(rng, 3)
  if distribution == 'uniform':
    a, b = (jax.random.uniform(k, shape) for k in (key_a, key_b))
  else:
    a, b = (jax.nn.sigmoid(mu + sigma * jax.random.normal(k, shape)) for k in (key_a, key_b))
  t, r = jnp.maximum(a, b), jnp.minimum(a, b)
  equal = jax.random.uniform(key_eq, shape) >= ratio_r_neq_t
  return jnp.where(equal, t, r), t


def meanflow_target(u_fn, z, r, t, v):
  """(u_theta, sg(u_tgt)), u_tgt = v - (t - r) jvp(u_theta, (z, r, t), (v, 0, 1)) (Eq. 8, 10)."""
  u, du_dt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
  target = v - diffusion.expand_like(t - r, z) * jax.lax.stop_gradient(du_dt)
  return u, jax.lax.stop_gradient(target)


def guided_velocity(v, u_cond, u_null, t, guidance_scale, guidance_mix, t_min=0.0, t_max=1.0):
  """v_tilde = omega v + kappa u(z_t, t, t | c) + (1 - omega - kappa) u(z_t, t, t | null) (§4.2,
  Appendix) for t in [t_min, t_max], v elsewhere; omega = ``guidance_scale``, kappa =
  ``guidance_mix``."""
  inside = (t >= t_min) & (t <= t_max)
  omega = diffusion.expand_like(jnp.where(inside, guidance_scale, 1.0), v)
  kappa = diffusion.expand_like(jnp.where(inside, guidance_mix, 0.0), v)
  return omega * v + kappa * u_cond + (1 - omega - kappa) * u_null


def adaptive_loss(u, target, power, c):
  """Per example sg(1 / (||Delta||^2 + c)^p) ||Delta||^2, Delta = u - target (§4.3)."""
  squared = jnp.sum((u - target) ** 2, axis=tuple(range(1, u.ndim)))
  return jax.lax.stop_gradient(1.0 / (squared + c) ** power) * squared, squared


@dataclasses.dataclass(frozen=True)
class MeanFlow(base.Objective):
  """Train a one-step average-velocity model from data; group 'student'."""
  denoiser: Denoiser            # config.network: its raw network becomes u_theta
  time_distribution: str = 'logit_normal'
  time_mu: float = -0.4
  time_sigma: float = 1.0
  ratio_r_neq_t: float = 0.25
  weight_power: float = 1.0     # p; 0: plain squared L2
  weight_c: float = 1e-3
  time_scale: float = 1.0       # the network sees (s t, s (t - r))
  guidance_scale: float = 1.0   # omega; 1 with guidance_mix 0: no guidance
  guidance_mix: float = 0.0     # kappa, the class-conditional u's share (Appendix)
  guidance_t_min: float = 0.0   # v_tilde only for t in [guidance_t_min, guidance_t_max]
  guidance_t_max: float = 1.0
  label_dropout: float = 0.0    # fraction of labels made null: the unconditional u
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if self.time_distribution not in TIME_DISTRIBUTIONS:
      raise ValueError(f'unknown objective.time_distribution {self.time_distribution!r}; known: '
                       f'{", ".join(TIME_DISTRIBUTIONS)}')
    if not 0.0 <= self.label_dropout < 1.0:
      raise ValueError(f'objective.label_dropout={self.label_dropout}: need 0 <= p < 1')
    if self.guidance_scale <= 0.0 or not 0.0 <= self.guidance_mix < 1.0:
      raise ValueError(f'objective.guidance_scale={self.guidance_scale}, guidance_mix='
                       f'{self.guidance_mix}: need omega > 0 and 0 <= kappa < 1 (the effective '
                       'scale is omega / (1 - kappa))')
    if not 0.0 <= self.guidance_t_min <= self.guidance_t_max <= 1.0:
      raise ValueError(f'objective.guidance_t_min={self.guidance_t_min}, guidance_t_max='
                       f'{self.guidance_t_max}: need 0 <= t_min <= t_max <= 1')
    if (self.guided or self.label_dropout) and not self.denoiser.num_classes:
      raise ValueError('objective.guidance_scale, guidance_mix and label_dropout need a '
                       'class-conditional network: set config.network.num_classes')
    if self.guided and not self.label_dropout:
      raise ValueError('guided MeanFlow needs objective.label_dropout > 0: the unconditional u '
                       'it is guided by is learned from the dropped labels')

  @property
  def guided(self) -> bool:
    return self.guidance_scale != 1.0 or self.guidance_mix != 0.0

  @property
  def student(self) -> AverageVelocity:
    return AverageVelocity(self.denoiser.net, self.time_scale)

  def _labels(self, labels):
    return denoiser_lib.conditioning_labels(self.student, labels)

  def init(self, rng, batch, teacher_params):
    del teacher_params
    return {'student': self.student.init(rng, batch['x'], self._labels(batch['label']))}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params, step
    key_t, key_e, key_dropout = jax.random.split(rng, 3)
    x, labels = batch['x'], self._labels(batch['label'])
    r, t = sample_times(key_t, x.shape[:1], self.time_mu, self.time_sigma, self.ratio_r_neq_t,
                        self.time_distribution)
    e = jax.random.normal(key_e, x.shape)
    z = (1 - diffusion.expand_like(t, x)) * x + diffusion.expand_like(t, x) * e
    # The labels' own stream (not a 4-way split), so that runs without CFG draw as before.
    labels, v = self._guided_target_velocity(params['student'], z, t, e - x, labels,
                                            jax.random.fold_in(rng, 3))
    u_fn = lambda z, r, t: self.student(params['student'], z, r, t, labels, train=True,
                                        rng=key_dropout)
    u, target = meanflow_target(u_fn, z, r, t, v)
    per_example, squared = adaptive_loss(u, target, self.weight_power, self.weight_c)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'squared_error': jnp.mean(squared)}

  def _guided_target_velocity(self, params, z, t, v, labels, rng):
    """(labels with a fraction ``label_dropout`` made null, sg(v_tilde)): v_tilde of
    :func:`guided_velocity` from u_theta(z_t, t, t | c) and u_theta(z_t, t, t | null), without
    dropout as in the official code; v itself where the label was dropped or without CFG."""
    num_classes = self.denoiser.num_classes
    dropped_labels = base.drop_labels(rng, labels, num_classes, self.label_dropout)
    if not self.guided:
      return dropped_labels, v
    null = jnp.full_like(labels, num_classes)
    if self.guidance_mix:
      u_cond, u_null = jnp.split(self.student(params, jnp.concatenate([z, z]), jnp.concatenate(
          [t, t]), jnp.concatenate([t, t]), jnp.concatenate([labels, null])), 2)
    else:
      u_cond, u_null = jnp.zeros_like(z), self.student(params, z, t, t, null)
    v_tilde = guided_velocity(v, u_cond, u_null, t, self.guidance_scale, self.guidance_mix,
                              self.guidance_t_min, self.guidance_t_max)
    dropped = diffusion.expand_like(dropped_labels == num_classes, v)
    return dropped_labels, jax.lax.stop_gradient(jnp.where(dropped, v, v_tilde))

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """z_r = z_t - (t - r) u(z_t, r, t) on t = 1, (k-1)/k, ..., 0 (Eq. 12)."""
    del teacher_params
    labels = self._labels(labels)
    times = jnp.linspace(1.0, 0.0, num_steps + 1)
    z = jax.random.normal(rng, shape)
    for i in range(num_steps):
      t, r = times[i], times[i + 1]
      z = z - (t - r) * self.student(params['student'], z, r, t, labels)
    return z
