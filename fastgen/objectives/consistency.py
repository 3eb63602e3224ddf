"""Consistency models: distillation (CD; Song et al. 2023, "Consistency Models", ICML 2023; official
code github.com/openai/consistency_models) and improved consistency training (iCT; Song &
Dhariwal 2023, "Improved Techniques for Training Consistency Models", ICLR 2024).

The student f(x, sigma) = c_skip x + c_out F(c_in x; c_noise) maps every point of a PF-ODE
trajectory to its origin, with EDM's preconditioning moved to sigma_min so that f(x, sigma_min)
= x exactly (Song et al. 2023, Eq. 5 and Appendix C). Group ``'student'``; the loss compares
adjacent points of the Karras grid (EDM Eq. 5),

  CD (Eq. 7):  d(f_theta(x0 + t_{n+1} z, t_{n+1}), sg f_theta-(x_hat_{t_n}, t_n)),

x_hat_{t_n} one Heun or Euler teacher step from t_{n+1}, theta- the EMA target of Eq. 8 (the
frozen entry ``'target'``, moved in ``set_frozen``); iCT (§3): the same z at both points, no
teacher, pseudo-Huber d weighted by 1 / (sigma_{i+1} - sigma_i), lognormal choice of i and a
doubling discretisation curriculum. Sampling: multistep consistency sampling (Algorithm 1).

Differences from the official code and the papers:
* CD's d is squared L2 or pseudo-Huber, not LPIPS;
* the sampler's time points are Karras-grid points, not tuned ones;
* iCT's metric is always pseudo-Huber (the paper's), not a config option.

Parameterization, both losses and the curriculum in full: docs/rules/consistency.md.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser, Network
from fastgen.objectives import base

METRICS = ('l2', 'pseudo_huber')
SOLVERS = ('heun', 'euler')


def consistency_preconditioning(sigma, sigma_data, sigma_min):
  """Song et al. 2023, Appendix C: (c_skip, c_out, c_in, c_noise), c_skip(sigma_min) = 1 and
  c_out(sigma_min) = 0 exactly."""
  c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
  c_out = sigma_data * (sigma - sigma_min) * jax.lax.rsqrt(sigma_data**2 + sigma**2)
  c_in = jax.lax.rsqrt(sigma**2 + sigma_data**2)
  return c_skip, c_out, c_in, jnp.log(sigma) / 4.0


@dataclasses.dataclass(frozen=True)
class ConsistencyFunction(Network):
  """f(params, x, sigma, labels): a raw network with the consistency preconditioning."""
  sigma_data: float = 0.5
  sigma_min: float = 0.002

  @classmethod
  def of(cls, denoiser: Denoiser, sigma_min: float) -> 'ConsistencyFunction':
    """The network of an EDM-parameterized denoiser (``config.network``), re-preconditioned."""
    if denoiser.parameterization != 'edm':
      raise ValueError('consistency models need network.parameterization="edm" (they reuse its '
                       'c_in and c_noise)')
    return cls(denoiser.net, denoiser.sigma_data, sigma_min)

  def __call__(self, params, x, sigma, labels=None, *, train=False, rng=None):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    c_skip, c_out, c_in, c_noise = consistency_preconditioning(sigma, self.sigma_data,
                                                               self.sigma_min)
    out = self._apply(params, diffusion.expand_like(c_in, x) * x, c_noise, labels, train, rng)
    return diffusion.expand_like(c_skip, x) * x + diffusion.expand_like(c_out, x) * out


def init_student(init_fn, rng, x, labels, teacher_params, init_from_teacher: bool):
  """Student params: a copy of ``teacher_params`` when asked (the teacher must be a network with
  the student's tree structure, shapes and dtypes), else ``init_fn(rng, x, labels)``."""
  if not init_from_teacher:
    return init_fn(rng, x, labels)
  student = jax.eval_shape(init_fn, rng, x, labels)
  same = (teacher_params is not None and
          jax.tree.structure(student) == jax.tree.structure(teacher_params) and
          all(a.shape == b.shape and a.dtype == b.dtype for a, b in
              zip(jax.tree.leaves(student), jax.tree.leaves(teacher_params))))
  if not same:
    raise ValueError(
        'objective.init_from_teacher=True needs a teacher network with the student\'s '
        'architecture (teacher params of the same tree structure and shapes as config.network '
        'builds); this teacher differs (e.g. a closed-form mixture teacher): set '
        '--config.objective.init_from_teacher=False or copy the teacher\'s network config')
  return jax.tree.map(jnp.copy, teacher_params)


def squared_distance(a, b):
  """Per-example ||a - b||^2 over all but the batch axis."""
  return jnp.sum((a - b) ** 2, axis=tuple(range(1, a.ndim)))


def pseudo_huber(a, b, c):
  """Per-example pseudo-Huber distance sqrt(||a - b||^2 + c^2) - c (Charbonnier et al. 1997;
  Song & Dhariwal 2023, §3.3; Lee et al. 2024, §4.2): ~ ||a - b||^2 / (2c) near 0, ~ ||a - b||
  far from it. Each rule chooses c: :func:`distance` here, reflow's
  :func:`fastgen.objectives.reflow.distance`."""
  return jnp.sqrt(squared_distance(a, b) + c**2) - c


def distance(a, b, metric: str):
  """Per-example d(a, b) of consistency models: 'l2' = ||a - b||^2 (Song et al. 2023, §4),
  'pseudo_huber' = :func:`pseudo_huber` with iCT's c = 0.00054 sqrt(dim) (Song & Dhariwal 2023,
  §3.3)."""
  if metric == 'l2':
    return squared_distance(a, b)
  return pseudo_huber(a, b, 0.00054 * math.sqrt(math.prod(a.shape[1:])))


def ode_step(denoise_fn, x, sigma, sigma_next, solver: str):
  """One step of the PF-ODE dx/dsigma = (x - D(x, sigma)) / sigma (EDM Eq. 3) from sigma to
  sigma_next > 0: 'euler' (DDIM), or 'heun' (EDM Algorithm 1, lines 5-8)."""
  x0_hat = denoise_fn(x, sigma)
  x_euler = samplers.ddim_step(x, x0_hat, sigma, sigma_next)
  if solver == 'euler':
    return x_euler
  expand = lambda v: diffusion.expand_like(v, x)
  d = (x - x0_hat) / expand(sigma)
  d_next = (x_euler - denoise_fn(x_euler, sigma_next)) / expand(sigma_next)
  return x + expand(sigma_next - sigma) * 0.5 * (d + d_next)


def karras_points(num_points, max_points: int, sigma_min, sigma_max, rho):
  """Increasing sigma_1 = sigma_min < ... < sigma_N = sigma_max (EDM Eq. 5) for a possibly traced
  ``num_points`` N, padded to the static length ``max_points`` (entries past N are meaningless)."""
  u = jnp.arange(max_points) / jnp.maximum(num_points - 1, 1)
  return diffusion.karras_sigma(u, sigma_min, sigma_max, rho)


def cd_loss(online_fn, target_fn, teacher_step, x0, rng, sigmas, metric):
  """Per-example consistency distillation loss (Song et al. 2023, Eq. 7, lambda = 1):
  d(f_theta(x, t_{n+1}), sg f_theta-(x_hat_{t_n}, t_n)), x = x0 + t_{n+1} z,
  x_hat_{t_n} = teacher_step(x, t_{n+1}, t_n); ``sigmas`` increasing, n uniform."""
  key_n, key_z = jax.random.split(rng)
  n = jax.random.randint(key_n, x0.shape[:1], 0, len(sigmas) - 1)
  sigma, sigma_next = sigmas[n + 1], sigmas[n]
  x = diffusion.add_noise(key_z, x0, sigma)
  x_hat = jax.lax.stop_gradient(teacher_step(x, sigma, sigma_next))
  return distance(online_fn(x, sigma), jax.lax.stop_gradient(target_fn(x_hat, sigma_next)),
                  metric)


def ct_num_points(step, total_steps: int, s0: int, s1: int):
  """iCT discretisation curriculum (Song & Dhariwal 2023, §3.4):
  N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)), the
  logarithm not rounded, so the last stage reaches s1 for any ratio (s0 = 10, s1 = 1000:
  N = 1001)."""
  log_ratio = math.log2(s1 // s0)
  stage_steps = max(int(total_steps // (log_ratio + 1)), 1)
  doublings = jnp.minimum(step // stage_steps, math.ceil(log_ratio))  # past s1 the min holds N
  return jnp.minimum(s0 * 2**doublings, s1) + 1


def lognormal_indices(rng, shape, sigmas, num_points, p_mean, p_std):
  """i in {0, ..., N - 2} with p(i) ∝ erf((ln sigma_{i+1} - P_mean) / (sqrt(2) P_std)) -
  erf((ln sigma_i - P_mean) / (sqrt(2) P_std)) (Song & Dhariwal 2023, §3.5) for increasing
  ``sigmas``, drawn by inverting the CDF: u ~ U(cdf_0, cdf_{N-1}), i = max{i: cdf_i <= u}."""
  cdf = jax.scipy.special.erf((jnp.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
  u = jax.random.uniform(rng, shape, minval=cdf[0], maxval=cdf[num_points - 1])
  return jnp.clip(jnp.searchsorted(cdf, u, side='right') - 1, 0, num_points - 2)


def ct_loss(consistency_fn, params, x0, labels, rng, num_points, max_points, *, sigma_min,
            sigma_max, rho, p_mean, p_std, metric):
  """Per-example iCT loss (Song & Dhariwal 2023, §3):
  lambda(sigma_i) d(f_theta(x0 + sigma_{i+1} z, sigma_{i+1}), sg f_theta(x0 + sigma_i z, sigma_i)),
  lambda = 1 / (sigma_{i+1} - sigma_i), i ~ the lognormal discretisation of N(P_mean, P_std^2)."""
  key_i, key_z, key_dropout = jax.random.split(rng, 3)
  sigmas = karras_points(num_points, max_points, sigma_min, sigma_max, rho)
  i = lognormal_indices(key_i, x0.shape[:1], sigmas, num_points, p_mean, p_std)
  sigma, sigma_next = sigmas[i], sigmas[i + 1]
  z = jax.random.normal(key_z, x0.shape)
  noisy = lambda s: x0 + diffusion.expand_like(s, x0) * z
  online = consistency_fn(params, noisy(sigma_next), sigma_next, labels, train=True,
                          rng=key_dropout)
  target = consistency_fn(params, noisy(sigma), sigma, labels, train=True, rng=key_dropout)
  return distance(online, jax.lax.stop_gradient(target), metric) / (sigma_next - sigma)


@dataclasses.dataclass(frozen=True)
class _Consistency(base.Objective):
  """What CD and CT share: the student consistency function, its labels and its sampler."""
  denoiser: Denoiser          # config.network: its raw network becomes the consistency function
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  metric: str = 'l2'          # d: 'l2' or 'pseudo_huber' (METRICS)
  groups = ('student',)
  network_group = 'student'

  @property
  def student(self) -> ConsistencyFunction:
    return ConsistencyFunction.of(self.denoiser, self.sigma_min)

  def __post_init__(self):
    if self.metric not in METRICS:
      raise ValueError(f'unknown objective.metric {self.metric!r}; known: {", ".join(METRICS)}')

  def _labels(self, batch):
    return denoiser_lib.conditioning_labels(self.student, batch['label'])

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """Song et al. 2023, Algorithm 1 on the first ``num_steps`` points of the
    ``num_steps + 1``-point Karras grid from sigma_max to sigma_min."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.student, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self.student(params['student'], x, sigma, labels), rng, shape,
        samplers.multistep_sigmas(num_steps, self.sigma_min, self.sigma_max, self.rho),
        sigma_out=self.sigma_min)


@dataclasses.dataclass(frozen=True)
class ConsistencyDistillation(_Consistency):
  """CD (Song et al. 2023, Algorithm 2); group 'student', frozen 'target' when target_ema > 0."""
  teacher: Any = None         # teacher(teacher_params, x, sigma, labels) -> x0_hat
  num_scales: int = 18        # N, points of the Karras grid
  solver: str = 'heun'
  target_ema: float = 0.0     # mu of Eq. 8; 0: target = stop-gradient(student)
  init_from_teacher: bool = True

  def __post_init__(self):
    super().__post_init__()
    if self.solver not in SOLVERS:
      raise ValueError(f'unknown objective.solver {self.solver!r}; known: {", ".join(SOLVERS)}')

  def init(self, rng, batch, teacher_params):
    student = init_student(self.student.init, rng, batch['x'], self._labels(batch),
                           teacher_params, self.init_from_teacher)
    if not self.target_ema:
      return {'student': student}
    return {'student': student, 'target': jax.tree.map(jnp.copy, student)}

  def set_frozen(self, params, ema_params, step):
    """theta- <- mu theta- + (1 - mu) theta (Eq. 8), before this step's update of theta."""
    del ema_params, step
    if not self.target_ema:
      return params
    target = jax.tree.map(lambda t, s: self.target_ema * t + (1.0 - self.target_ema) * s,
                          params['target'], params['student'])
    return {**params, 'target': target}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_loss, key_dropout = jax.random.split(rng)
    labels = self._labels(batch)
    teacher_labels = denoiser_lib.conditioning_labels(self.teacher, batch['label'])
    target_params = params['target'] if self.target_ema else params['student']
    f = lambda p: lambda x, sigma: self.student(p, x, sigma, labels, train=True, rng=key_dropout)
    teacher_fn = lambda x, sigma: self.teacher(teacher_params, x, sigma, teacher_labels)
    teacher_step = lambda x, s, s_next: ode_step(teacher_fn, x, s, s_next, self.solver)
    sigmas = karras_points(self.num_scales, self.num_scales, self.sigma_min, self.sigma_max,
                           self.rho)
    loss = jnp.mean(cd_loss(f(params['student']), f(target_params), teacher_step, batch['x'],
                            key_loss, sigmas, self.metric))
    return loss, {'loss': loss}


@dataclasses.dataclass(frozen=True)
class ConsistencyTraining(_Consistency):
  """iCT (Song & Dhariwal 2023) from data alone; group 'student'. ``total_steps`` is K of the
  curriculum: set it to train.num_steps."""
  total_steps: int = 400_000
  s0: int = 10
  s1: int = 1280
  p_mean: float = -1.1
  p_std: float = 2.0
  metric: str = 'pseudo_huber'  # iCT's d (§3.3)

  def init(self, rng, batch, teacher_params):
    del teacher_params
    return {'student': self.student.init(rng, batch['x'], self._labels(batch))}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, teacher_params
    num_points = ct_num_points(step, self.total_steps, self.s0, self.s1)
    per_example = ct_loss(self.student, params['student'], batch['x'], self._labels(batch), rng,
                          num_points, self.s1 + 1, sigma_min=self.sigma_min,
                          sigma_max=self.sigma_max, rho=self.rho, p_mean=self.p_mean,
                          p_std=self.p_std, metric=self.metric)
    loss = jnp.mean(per_example)
    return loss, {'loss': loss, 'num_points': num_points.astype(jnp.float32)}
