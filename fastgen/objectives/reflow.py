"""Reflow: 2-rectified flow on a teacher's ODE couplings (Liu et al. 2022, "Flow Straight and
Fast", §2.2, Eq. 3 with Algorithm 1's reflow), with the training improvements of 2-RF++ (Lee et
al. 2024, "Improving the Training of Rectified Flows", §4; official code
github.com/sangyun884/rfpp, ``train.py`` and ``t_dist.py``).

For pairs (z, x0 = Phi_teacher(z)) of the teacher's deterministic ODE (:mod:`fastgen.couplings`),
the student velocity is trained on the straight line between them, x_t = (1 - t) x0 + t z:

  min_theta E_{(z, x0), t ~ p_t} [ m( v_theta(x_t, t), z - x0 ) ],

minimised by E[z - x0 | x_t] (Liu et al. 2022, Eq. 3): the same marginals, straighter paths.
Options: p_t uniform, logit-normal or 2-RF++'s U-shaped (§4.1, the default); metric m (the paper's
premetric) 'l2', pseudo-Huber (§4.2, the default), 'lpips' or 2-RF++'s 'lpips_huber'; initialisation
from the teacher (§4.3); couplings from the data set or solved online. t in [1e-5, ``t_max``],
by default 1 - 1e-5 as in the official code (an option: an EDM-preconditioned student sees sigma
= t / (1 - t) = 1e5 there; configs/reflow.py's digits run uses 1 - 1e-3). Group ``'student'``;
sampling: Euler steps of v_theta from t = ``t_max`` to 0.

LPIPS ('lpips', 'lpips_huber') is rfpp's, piq's LPIPS with average pooling in VGG
(``lpips_pooling='average'``, the default here; 'max' is the LPIPS of Zhang et al. 2018).

Differences from the official code: the default metric is pseudo-Huber, not LPIPS-Huber
(fastgen ships no VGG weights; 'lpips' reads ``lpips_weights``, or the weights that
``python -m fastgen.assets fetch lpips-vgg`` caches; configs/reflow.py's cifar sets the official
LPIPS-Huber with LPIPS / t); LPIPS's linear weights are LPIPS v0.1's, not read from piq's own
file.

Options, couplings and the flow convention in full: docs/rules/rectified_flows.md.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import couplings, diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.networks import lpips
from fastgen.objectives import base, consistency

METRICS = ('l2', 'pseudo_huber', 'lpips', 'lpips_huber')
PERCEPTUAL = ('lpips', 'lpips_huber')
COUPLINGS = ('dataset', 'online')
T_MIN, T_MAX = 1e-5, couplings.FLOW_T_MAX


def distance(prediction, target, metric: str):
  """Per-example m(a, b) over the d dimensions: 'l2' = ||a - b||^2 / d; 'pseudo_huber' =
  :func:`fastgen.objectives.consistency.pseudo_huber` / d with c = 0.00054 d (Lee et al. 2024,
  §4.2; official code ``loss_type='huber'``)."""
  dim = prediction[0].size
  if metric == 'l2':
    return consistency.squared_distance(prediction, target) / dim
  if metric == 'pseudo_huber':
    return consistency.pseudo_huber(prediction, target, 0.00054 * dim) / dim
  raise ValueError(f'metric {metric!r} compares arrays; known: l2, pseudo_huber')


def endpoint_loss(metric: str, params, x0_hat, x0, resolution: int = 224, pooling: str = 'max'):
  """Per-example m(x0_hat, x0) of predicted and target endpoints: 'l2' and 'pseudo_huber' as
  :func:`distance`, 'lpips' LPIPS(x0_hat, x0) (VGG ``pooling`` of
  :func:`fastgen.networks.lpips.lpips`), 'lpips_huber' their sum with pseudo-Huber;
  ``params['lpips']`` holds the LPIPS weights."""
  if metric not in PERCEPTUAL:
    return distance(x0_hat, x0, metric)
  perceptual = lpips.lpips(params['lpips'], x0_hat, x0, resolution, pooling)
  return perceptual + (distance(x0_hat, x0, 'pseudo_huber') if metric == 'lpips_huber' else 0.0)


def velocity_loss(metric: str, params, v, noise, x0, t, resolution: int = 224,
                  lpips_divide_by_t: bool = False, pooling: str = 'max'):
  """Per-example reflow loss of v_theta(x_t, t) against z - x0: m(v, z - x0) for 'l2' and
  'pseudo_huber'; LPIPS(x_t - t v, x0) for 'lpips'; and rfpp's 'lpips_huber'
  (1 - t) pseudo_huber(v, z - x0) + LPIPS(x_t - t v, x0) (Lee et al. 2024, §4.2). With
  ``lpips_divide_by_t`` the LPIPS term is divided by t (rfpp ``--lpips_divt``, its CIFAR-10
  command: ``loss_lp / t`` with t in [1e-5, 1 - 1e-5], no clamp); ``pooling`` is LPIPS's VGG
  pooling (:func:`fastgen.networks.lpips.lpips`)."""
  if metric not in PERCEPTUAL:
    return distance(v, noise - x0, metric)
  x0_hat = diffusion.flow_interpolate(x0, noise, t) - diffusion.expand_like(t, v) * v
  perceptual = lpips.lpips(params['lpips'], x0_hat, x0, resolution, pooling)
  if lpips_divide_by_t:
    perceptual = perceptual / t
  if metric == 'lpips':
    return perceptual
  return (1.0 - t) * distance(v, noise - x0, 'pseudo_huber') + perceptual


def init_lpips(objective) -> dict:
  """``{'lpips': weights}`` (a frozen params entry) when the metric is perceptual, else {}."""
  if objective.metric not in PERCEPTUAL:
    return {}
  return {'lpips': jax.tree.map(jnp.asarray, lpips.load_weights(objective.lpips_weights))}


def check_option(name: str, value, known):
  """One clear error for an option ``objective.<name>`` outside ``known``."""
  if value not in known:
    raise ValueError(f'unknown objective.{name} {value!r}; known: {", ".join(known)}')


def coupling_batch(objective, teacher_params, batch, rng):
  """``(z, x0, labels)``: the batch's pairs ('dataset'), or the teacher's ODE solved for fresh
  noise and labels ('online'). Labels are None for an unconditional student."""
  if objective.couplings == 'dataset':
    if 'noise' not in batch:
      raise ValueError('objective.couplings="dataset" trains on teacher-ODE pairs: set '
                       'data.name="couplings" (or objective.couplings="online")')
    return (batch['noise'], batch['x'],
            denoiser_lib.conditioning_labels(objective.denoiser, batch['label']))
  key_z, key_label = jax.random.split(rng)
  shape = batch['x'].shape
  noise = jax.random.normal(key_z, shape)
  labels = denoiser_lib.uniform_labels(key_label, shape[0], objective.denoiser.num_classes)
  x0 = couplings.solve_teacher_ode(objective.teacher, teacher_params, noise, labels,
                                   objective.ode_steps)
  return noise, jax.lax.stop_gradient(x0), labels


@dataclasses.dataclass(frozen=True)
class CouplingStudent(base.Objective):
  """What the coupling-trained velocity students (reflow, InstaFlow, SlimFlow) share: a group
  'student' initialised from the teacher, the coupling and metric options, the student's
  velocity, and Euler sampling of its ODE. A subclass adds its ``loss``."""
  denoiser: Denoiser            # the student's architecture (velocity through the flow view)
  teacher: Any                  # what made the couplings (used by couplings='online')
  metric: str = 'pseudo_huber'
  lpips_weights: str = ''       # metric 'lpips' / 'lpips_huber': .npz of fastgen.networks.lpips
  lpips_resolution: int = 224
  lpips_pooling: str = 'max'    # VGG pooling: LPIPS's 'max' or piq's 'average'
  couplings: str = 'dataset'
  ode_steps: int = 32           # couplings='online': teacher Heun steps per pair
  init_from_teacher: bool = True
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    check_option('metric', self.metric, METRICS)
    check_option('lpips_pooling', self.lpips_pooling, lpips.POOLINGS)
    check_option('couplings', self.couplings, COUPLINGS)
    if self.metric in PERCEPTUAL and not self.lpips_weights:
      lpips.cached_weights()  # the fetched weights, else one error naming both ways to give them

  def init(self, rng, batch, teacher_params):
    labels = denoiser_lib.conditioning_labels(self.denoiser, batch['label'])
    return {'student': consistency.init_student(self.denoiser.init, rng, batch['x'], labels,
                                                teacher_params, self.init_from_teacher),
            **init_lpips(self)}

  def velocity(self, params, x_t, t, labels=None):
    """The student's velocity v_theta(x_t, t) (straightness evaluation)."""
    return self.denoiser.velocity(params['student'], x_t, t,
                                  denoiser_lib.conditioning_labels(self.denoiser, labels))

  @property
  def ode_start(self) -> float:
    """The flow time where the student's ODE starts (sampling, straightness)."""
    return T_MAX

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` Euler steps of the student's ODE from t = :attr:`ode_start`
    (``num_steps`` network evaluations)."""
    del teacher_params
    velocity_fn = lambda x, t: self.velocity(params, x, t, labels)
    return samplers.flow_euler(velocity_fn, jax.random.normal(rng, shape), num_steps,
                               self.ode_start)


@dataclasses.dataclass(frozen=True)
class Reflow(CouplingStudent):
  """2-rectified flow (2-RF++ by default); group 'student', a velocity model."""
  time_distribution: str = 'u_shaped'
  u_shape_a: float = 4.0
  lpips_pooling: str = 'average'   # rfpp's LPIPS is piq's, with average pooling
  lpips_divide_by_t: bool = False  # LPIPS / t (rfpp --lpips_divt, its CIFAR-10 command)
  t_max: float = T_MAX  # top of the training times and where sampling starts (official 1 - 1e-5)

  def __post_init__(self):
    super().__post_init__()
    check_option('time_distribution', self.time_distribution, diffusion.FLOW_TIME_DISTRIBUTIONS)
    if not T_MIN < self.t_max < 1.0:
      raise ValueError(f'objective.t_max={self.t_max}: need {T_MIN} < t_max < 1')
    if self.lpips_divide_by_t and self.metric not in PERCEPTUAL:
      raise ValueError(f'objective.lpips_divide_by_t divides the LPIPS term by t: it needs '
                       f'objective.metric in {PERCEPTUAL}, got {self.metric!r}')

  def _reflow_loss(self, params, noise, x0, labels, key_t, key_dropout):
    """E_t m(v_theta(x_t, t), z - x0) over the batch's pairs (z, x0), t ~ ``time_distribution``
    on [T_MIN, ``t_max``] (Liu et al. 2022, Eq. 3)."""
    t = diffusion.sample_flow_time(key_t, x0.shape[:1], self.time_distribution, T_MIN,
                                   self.t_max, self.u_shape_a)
    v = self.denoiser.velocity(params['student'], diffusion.flow_interpolate(x0, noise, t), t,
                               labels, train=True, rng=key_dropout)
    return jnp.mean(velocity_loss(self.metric, params, v, noise, x0, t, self.lpips_resolution,
                                  self.lpips_divide_by_t, self.lpips_pooling))

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_pair, key_t, key_dropout = jax.random.split(rng, 3)
    noise, x0, labels = coupling_batch(self, teacher_params, batch, key_pair)
    loss = self._reflow_loss(params, noise, x0, labels, key_t, key_dropout)
    return loss, {'loss': loss}

  @property
  def ode_start(self) -> float:
    return self.t_max
