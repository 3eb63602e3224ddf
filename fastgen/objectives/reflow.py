"""Reflow: 2-rectified flow on a teacher's ODE couplings (Liu et al. 2022, "Flow Straight and
Fast", §2.2, Eq. 3 with Algorithm 1's reflow), with the training improvements of 2-RF++ (Lee et
al. 2024, "Improving the Training of Rectified Flows", §4; official code
github.com/sangyun884/rfpp, ``train.py`` and ``t_dist.py``).

For pairs (z, x0 = Phi_teacher(z)) of the teacher's deterministic ODE
(:mod:`fastgen.couplings`), the student velocity v_theta is trained on the straight line between
them, in fastgen's flow convention x_t = (1 - t) x0 + t z (t = 1 is noise):

  min_theta E_{(z, x0), t ~ p_t} [ m( v_theta(x_t, t), z - x0 ) ],

whose minimiser is the conditional expectation E[z - x0 | x_t] (Liu et al. 2022, Eq. 3). Its ODE
has the same marginals as the coupling but straighter paths, so few Euler steps suffice.
Options (2-RF++ in brackets, this module's defaults):

* ``time_distribution`` p_t: 'uniform' (2-RF), 'logit_normal' (Esser et al. 2024, Eq. 19),
  ['u_shaped'] p_t(t) ∝ exp(a t) + exp(a (1 - t)), a = 4 (Lee et al. 2024, §4.1), which puts
  training where the 2-RF's error is largest, near t = 0 and t = 1.
* ``premetric`` m: 'l2' (mean squared error, 2-RF), ['pseudo_huber'] (Lee et al. 2024, §4.2; the
  official code's ``huber``), 'lpips' on the predicted endpoint x0_hat = x_t - t v_theta, or
  2-RF++'s 'lpips_huber' (1 - t) pseudo_huber(v_theta, z - x0) + LPIPS(x0_hat, x0) (§4.2,
  official ``lpips-huber``). LPIPS reads VGG-16 weights from ``lpips_weights``
  (:mod:`fastgen.networks.lpips`; fastgen ships none), kept as the frozen params entry 'lpips'.
* Initialisation from the teacher when it is a network of the student's architecture
  (Lee et al. 2024, §4.3; ``init_from_teacher``), e.g. the digits EDM denoiser, whose velocity
  v = (x_t - D(x_t / (1 - t), t / (1 - t))) / t is the flow-language view of the same network.
* ``couplings``: 'dataset' reads (z, x0) from the batch (``data.name='couplings'``); 'online'
  solves the teacher's ODE (``ode_steps`` Heun steps) for fresh noise inside every step.

Time runs over [T_MIN, T_MAX] = [1e-5, 1 - 1e-5] as in the official code, where EDM-preconditioned
students are finite. Sampling: ``num_steps`` Euler steps on a uniform grid from T_MAX to 0.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import couplings, diffusion, samplers
from fastgen.denoiser import Denoiser
from fastgen.networks import lpips
from fastgen.objectives import consistency

TIME_DISTRIBUTIONS = ('uniform', 'logit_normal', 'u_shaped')
PREMETRICS = ('l2', 'pseudo_huber', 'lpips', 'lpips_huber')
PERCEPTUAL = ('lpips', 'lpips_huber')
COUPLINGS = ('dataset', 'online')
T_MIN, T_MAX = 1e-5, couplings.FLOW_T_MAX


def sample_time(rng, shape, distribution: str, u_shape_a: float = 4.0):
  """t in [T_MIN, T_MAX] from 'uniform'; 'logit_normal' sigmoid(N(0, 1)); or 'u_shaped'
  p(t) ∝ exp(a t) + exp(a (1 - t)) (Lee et al. 2024, §4.1): t = log(1 + u (e^a - 1)) / a, the
  inverse CDF of p ∝ e^(a t), reflected to 1 - t with probability 1/2."""
  key, key_flip = jax.random.split(rng)
  if distribution == 'uniform':
    t = jax.random.uniform(key, shape)
  elif distribution == 'logit_normal':
    t = jax.nn.sigmoid(jax.random.normal(key, shape))
  elif distribution == 'u_shaped':
    t = jnp.log1p(jax.random.uniform(key, shape) * jnp.expm1(u_shape_a)) / u_shape_a
    t = jnp.where(jax.random.bernoulli(key_flip, 0.5, shape), t, 1.0 - t)
  else:
    raise ValueError(f'unknown objective.time_distribution {distribution!r}; known: '
                     f'{", ".join(TIME_DISTRIBUTIONS)}')
  return T_MIN + (T_MAX - T_MIN) * t


def premetric(prediction, target, name: str):
  """Per-example m(a, b) over the d dimensions: 'l2' = ||a - b||^2 / d; 'pseudo_huber' =
  (sqrt(||a - b||^2 + c^2) - c) / d with c = 0.00054 d (Lee et al. 2024, §4.2; official code
  ``loss_type='huber'``)."""
  axes = tuple(range(1, prediction.ndim))
  dim = prediction[0].size
  squared = jnp.sum((prediction - target) ** 2, axis=axes)
  if name == 'l2':
    return squared / dim
  if name == 'pseudo_huber':
    c = 0.00054 * dim
    return (jnp.sqrt(squared + c**2) - c) / dim
  raise ValueError(f'premetric {name!r} compares arrays; known: l2, pseudo_huber')


def endpoint_loss(name: str, params, x0_hat, x0, resolution: int = 224):
  """Per-example m(x0_hat, x0) of predicted and target endpoints: 'l2' and 'pseudo_huber' as
  :func:`premetric`, 'lpips' LPIPS(x0_hat, x0), 'lpips_huber' their sum with pseudo-Huber;
  ``params['lpips']`` holds the LPIPS weights."""
  if name not in PERCEPTUAL:
    return premetric(x0_hat, x0, name)
  perceptual = lpips.lpips(params['lpips'], x0_hat, x0, resolution)
  return perceptual + (premetric(x0_hat, x0, 'pseudo_huber') if name == 'lpips_huber' else 0.0)


def velocity_loss(name: str, params, v, noise, x0, t, resolution: int = 224):
  """Per-example reflow loss of v_theta(x_t, t) against z - x0: m(v, z - x0) for 'l2' and
  'pseudo_huber'; LPIPS(x_t - t v, x0) for 'lpips'; and rfpp's 'lpips_huber'
  (1 - t) pseudo_huber(v, z - x0) + LPIPS(x_t - t v, x0) (Lee et al. 2024, §4.2)."""
  if name not in PERCEPTUAL:
    return premetric(v, noise - x0, name)
  x0_hat = interpolate(x0, noise, t) - diffusion.expand_like(t, v) * v
  perceptual = lpips.lpips(params['lpips'], x0_hat, x0, resolution)
  if name == 'lpips':
    return perceptual
  return (1.0 - t) * premetric(v, noise - x0, 'pseudo_huber') + perceptual


def init_lpips(objective) -> dict:
  """``{'lpips': weights}`` (a frozen params entry) when the premetric is perceptual, else {}."""
  if objective.premetric not in PERCEPTUAL:
    return {}
  return {'lpips': jax.tree.map(jnp.asarray, lpips.load_weights(objective.lpips_weights))}


def interpolate(x0, noise, t):
  """Liu et al. 2022, Eq. 1 in fastgen's convention: x_t = (1 - t) x0 + t z."""
  t = diffusion.expand_like(t, x0)
  return (1.0 - t) * x0 + t * noise


def flow_euler(velocity_fn, noise, num_steps: int):
  """Euler on dx/dt = v(x, t) from x = T_MAX z at t = T_MAX down a uniform grid to t = 0."""
  return samplers.flow_euler_sampler(velocity_fn, T_MAX * noise,
                                     jnp.linspace(T_MAX, 0.0, num_steps + 1))


def check_options(objective):
  """One clear error for a bad option of a rectified-flow objective (those it has)."""
  choices = {'time_distribution': TIME_DISTRIBUTIONS, 'premetric': PREMETRICS,
             'couplings': COUPLINGS}
  for name, known in choices.items():
    value = getattr(objective, name, known[0])
    if value not in known:
      raise ValueError(f'unknown objective.{name} {value!r}; known: {", ".join(known)}')
  if getattr(objective, 'premetric', '') in PERCEPTUAL and not objective.lpips_weights:
    lpips.cached_weights()  # the fetched weights, else one error naming both ways to give them


def coupling_batch(objective, teacher_params, batch, rng):
  """``(z, x0, labels)``: the batch's pairs ('dataset'), or the teacher's ODE solved for fresh
  noise and labels ('online'). Labels are None for an unconditional student."""
  num_classes = objective.denoiser.num_classes
  if objective.couplings == 'dataset':
    if 'noise' not in batch:
      raise ValueError('objective.couplings="dataset" trains on teacher-ODE pairs: set '
                       'data.name="couplings" (or objective.couplings="online")')
    labels = batch['label'] if num_classes else None
    return batch['noise'], batch['x'], labels
  key_z, key_label = jax.random.split(rng)
  shape = batch['x'].shape
  noise = jax.random.normal(key_z, shape)
  labels = jax.random.randint(key_label, shape[:1], 0, num_classes) if num_classes else None
  x0 = couplings.solve_teacher_ode(objective.teacher, teacher_params, noise, labels,
                                   objective.ode_steps)
  return noise, jax.lax.stop_gradient(x0), labels


@dataclasses.dataclass(frozen=True)
class CouplingStudent:
  """What the coupling-trained velocity students (reflow, InstaFlow) share: a group 'student'
  initialised from the teacher, the coupling and premetric options, the student's velocity, and
  Euler sampling of its ODE. A subclass adds its ``loss``."""
  denoiser: Denoiser            # the student's architecture (velocity through the flow view)
  teacher: Any                  # what made the couplings (used by couplings='online')
  premetric: str = 'pseudo_huber'
  lpips_weights: str = ''       # premetric 'lpips' / 'lpips_huber': .npz of fastgen.networks.lpips
  lpips_resolution: int = 224
  couplings: str = 'dataset'
  ode_steps: int = 32           # couplings='online': teacher Heun steps per pair
  init_from_teacher: bool = True
  groups = ('student',)

  def __post_init__(self):
    check_options(self)

  def init(self, rng, batch, teacher_params):
    labels = batch['label'] if self.denoiser.num_classes else None
    return {'student': consistency.init_student(self.denoiser.init, rng, batch['x'], labels,
                                                teacher_params, self.init_from_teacher),
            **init_lpips(self)}

  def velocity(self, params, x_t, t, labels=None):
    """The student's velocity v_theta(x_t, t) (straightness evaluation)."""
    return self.denoiser.velocity(params['student'], x_t, t,
                                  labels if self.denoiser.num_classes else None)

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` Euler steps of the student's ODE (``num_steps`` network evaluations)."""
    del teacher_params
    velocity_fn = lambda x, t: self.velocity(params, x, t, labels)
    return flow_euler(velocity_fn, jax.random.normal(rng, shape), num_steps)


@dataclasses.dataclass(frozen=True)
class Reflow(CouplingStudent):
  """2-rectified flow (2-RF++ by default); group 'student', a velocity model."""
  time_distribution: str = 'u_shaped'
  u_shape_a: float = 4.0

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_pair, key_t, key_dropout = jax.random.split(rng, 3)
    noise, x0, labels = coupling_batch(self, teacher_params, batch, key_pair)
    t = sample_time(key_t, x0.shape[:1], self.time_distribution, self.u_shape_a)
    v = self.denoiser.velocity(params['student'], interpolate(x0, noise, t), t, labels,
                               train=True, rng=key_dropout)
    loss = jnp.mean(velocity_loss(self.premetric, params, v, noise, x0, t,
                                  self.lpips_resolution))
    return loss, {'loss': loss}
