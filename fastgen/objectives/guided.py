"""Distillation of a classifier-free-guided teacher (Meng et al. 2023, "On Distillation of Guided
Diffusion Models", CVPR 2023, §3.1-3.2; no official code), in EDM's sigma language (alpha = 1).

The teacher guided at weight w (Meng §2, the x0 form of Ho & Salimans 2022 with w = 0 the
conditional model) is

  D_w(x, sigma, c) = (1 + w) D(x, sigma, c) - w D(x, sigma, null).

Stage one (§3.1): one student network D_eta(x, sigma, c, w), conditioned on w, matches the
guided teacher at every w ~ U[w_min, w_max] (the paper's U[0, 4]):

  L_1 = E_{w, x0, sigma, eps} max(1 / sigma^2, 1) || D_eta(x0 + sigma eps, sigma, c, w)
                                                 - D_w(x0 + sigma eps, sigma, c) ||^2.

Stage two (§3.2): progressive distillation (:mod:`fastgen.objectives.progressive`,
Salimans & Ho 2022, Algorithm 2) of the stage-one student, w kept as an input and drawn afresh
from U[w_min, w_max] each example: round r >= 1 trains a student of N_r = initial_steps / 2^(r-1)
DDIM steps on two DDIM steps of the frozen round-(r - 1) student (``'previous'``) at the same w.

Both stages condition on each example's own label c (``data_labels``; the paper's (x, c) pairs of
the data set): the noisy x = x0 + sigma eps then lies where the guided sampler for c goes. Drawn
independently of x0, a label c mostly meets points of other classes, where at small sigma the
guided target is far from x (a large noise estimate, times 1 + w) and where no sampler for c
goes; on gmm2d the student then spends its capacity there (docs/results.md).

Training steps [0, stage_one_steps) are stage one (round 0), then ``steps_per_round`` per
halving round, initial_steps -> ... -> final_steps. Group ``'student'``; frozen ``'previous'`` and
``'round'``. Sampling: DDIM on EDM's grid at ``sample_w`` (``num_steps = 0``: the current round's
N_r; stage one's student is a guided denoiser for any sampler).

The w input: the network receives (c_noise(sigma), w) as two columns of its noise conditioning
(:class:`GuidanceConditioned`; :func:`fastgen.networks.unet.embed_times`, as MeanFlow's two
times), so the MLP and U-Nets need no change. Initialised from the teacher, the student is the
teacher's network with zero weights on the w embedding: it starts as the unguided teacher at
every w (the paper, too, starts the student from the teacher).

Differences from the paper: EDM's variance-exploding sigma grid with the progressive module's
noise levels (sigma on EDM's grid read continuously, uniform in u) and truncated-SNR weight, not
the paper's cosine schedule and its (unstated here) loss weighting; w enters through the noise
embedding's second column, where the paper adds a separate w embedding. ``data_labels=False``
(labels drawn uniformly, the data set's x0 only setting where the loss looks) is an option for
a data set without labels.

Details: docs/rules/guided.md.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.denoiser import Denoiser
from fastgen.objectives import base, progressive


@dataclasses.dataclass(frozen=True)
class GuidanceConditioned(Denoiser):
  """D(params, x, sigma, w, labels): an EDM-preconditioned denoiser whose network takes the
  guidance weight w as a second noise-conditioning column, (c_noise(sigma), w)."""

  def init(self, rng, x, labels=None):
    cond = jnp.ones(x.shape[:1] + (2,), jnp.float32)
    return self.net.init({'params': rng}, x, cond, labels, train=False)['params']

  def __call__(self, params, x, sigma, w, labels=None, *, train=False, rng=None):
    if self.parameterization == 'flow':
      raise ValueError('guided distillation needs an x0-predicting network: set '
                       "config.network.parameterization to 'edm', 'vp' or 've', not 'flow'")
    sigma, w = (jnp.broadcast_to(jnp.asarray(a, jnp.float32), x.shape[:1]) for a in (sigma, w))
    c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
    f = self._apply(params, diffusion.expand_like(c_in, x) * x, jnp.stack([c_noise, w], axis=1),
                    labels, train, rng)
    return diffusion.expand_like(c_skip, x) * x + diffusion.expand_like(c_out, x) * f.astype(
        x.dtype)


def from_teacher_with_zero_guidance_embedding(student_shapes, teacher_params):
  """The teacher's params padded to the student's shapes with zeros: the mapping network's first
  dense layer (``map_layer0``) gets zero rows for the w embedding and ``map_label`` zero columns,
  so the student equals the teacher at every w. Any other shape difference is an error."""
  def pad(path, shape, value):
    if shape.shape == value.shape:
      return jnp.array(value)
    name = jax.tree_util.keystr(path)
    if value.ndim == 2 and (('map_layer0' in name and shape.shape[1] == value.shape[1]) or
                            ('map_label' in name and shape.shape[0] == value.shape[0])):
      widths = [(0, s - v) for s, v in zip(shape.shape, value.shape)]
      return jnp.pad(value, widths)
    raise ValueError(f'objective.init_from_teacher=True: teacher param {name} {value.shape} does '
                     f'not fit the w-conditioned student {shape.shape}; the teacher must have the '
                     'student\'s network config (or set objective.init_from_teacher=False)')

  if teacher_params is None or (jax.tree.structure(student_shapes) !=
                                jax.tree.structure(teacher_params)):
    raise ValueError('objective.init_from_teacher=True needs a teacher network with the '
                     'student\'s architecture; this teacher differs (e.g. a closed-form mixture '
                     'teacher): set --config.objective.init_from_teacher=False')
  return jax.tree_util.tree_map_with_path(pad, student_shapes, teacher_params)


@dataclasses.dataclass(frozen=True)
class GuidedDistillation(base.Objective):
  """Stage one (w-conditioned student of the guided teacher), then halving rounds with w as an
  input; group 'student', frozen 'previous' and 'round'."""
  denoiser: Denoiser            # the student's architecture (wrapped to take w)
  teacher: Any                  # teacher(teacher_params, x, sigma, labels) -> x0_hat, with a null
  w_min: float = 0.0            # label; w ~ U[w_min, w_max] (the paper's U[0, 4])
  w_max: float = 4.0
  sample_w: float = 2.0         # the guidance weight sample() draws at
  stage_one_steps: int = 1000
  initial_steps: int = 8        # stage two: N_1, the first round's student steps (teacher 2 N_1)
  final_steps: int = 1
  steps_per_round: int = 1000
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  init_from_teacher: bool = True
  data_labels: bool = True      # the batch's labels (the paper); False: uniform labels
  groups = ('student',)
  network_group = 'student'

  def __post_init__(self):
    if not 0.0 <= self.w_min <= self.w_max:
      raise ValueError(f'objective.w_min={self.w_min}, w_max={self.w_max}: need 0 <= w_min <= '
                       'w_max')
    if self.stage_one_steps < 1 or self.steps_per_round < 1:
      raise ValueError(f'objective.stage_one_steps={self.stage_one_steps} and '
                       f'objective.steps_per_round={self.steps_per_round} must be >= 1')
    ratio = self.initial_steps // max(self.final_steps, 1)
    if (self.final_steps < 1 or ratio * self.final_steps != self.initial_steps or
        ratio & (ratio - 1)):
      raise ValueError(f'objective.initial_steps={self.initial_steps} must be final_steps='
                       f'{self.final_steps} times a power of two')
    if not getattr(self.denoiser, 'num_classes', 0):
      raise ValueError('guided distillation needs a class-conditional student: set '
                       'config.network.num_classes (the teacher\'s classes)')
    if self.teacher is not None and not getattr(self.teacher, 'num_classes', 0):
      raise ValueError('guided distillation needs a class-conditional teacher with a null label: '
                       'set config.teacher.conditional=True (analytic mixture) or give a '
                       'class-conditional checkpoint in config.teacher.workdir')

  @property
  def student(self) -> GuidanceConditioned:
    fields = {f.name: getattr(self.denoiser, f.name) for f in dataclasses.fields(Denoiser)}
    return GuidanceConditioned(**fields)

  @property
  def num_rounds(self) -> int:
    """Stage one plus the halving rounds."""
    return 1 + int(math.log2(self.initial_steps // self.final_steps)) + 1

  @property
  def round_ends(self) -> tuple[int, ...]:
    """Stage one's end, then each halving round's."""
    return tuple(self.stage_one_steps + r * self.steps_per_round for r in range(self.num_rounds))

  def _round_at(self, step):
    """0 during stage one, then 1, 2, ... for the halving rounds."""
    halving = jnp.minimum((step - self.stage_one_steps) // self.steps_per_round,
                          self.num_rounds - 2)
    return jnp.where(step < self.stage_one_steps, 0, 1 + halving).astype(jnp.int32)

  def _student_steps(self, round_index):
    """N_r = initial_steps / 2^(r - 1) for r >= 1; stage one samples in 2 initial_steps."""
    return 2 * self.initial_steps // 2 ** jnp.asarray(round_index, jnp.int32)

  def init(self, rng, batch, teacher_params):
    labels = jnp.zeros(batch['x'].shape[:1], jnp.int32)
    if self.init_from_teacher:
      shapes = jax.eval_shape(self.student.init, rng, batch['x'], labels)
      student = from_teacher_with_zero_guidance_embedding(shapes, teacher_params)
    else:
      student = self.student.init(rng, batch['x'], labels)
    return {'student': student, 'previous': jax.tree.map(jnp.copy, student),
            'round': jnp.zeros((), jnp.int32)}

  def set_frozen(self, params, ema_params, step):
    """At the first step of round r >= 1: previous <- student (stage one's student teaches
    round 1)."""
    del ema_params
    round_index = self._round_at(step)
    previous = jax.lax.cond(round_index != params['round'], lambda: params['student'],
                            lambda: params['previous'])
    return {**params, 'previous': previous, 'round': round_index}

  def _grid(self, num_steps):
    return lambda k: progressive.grid_sigma(k / num_steps, self.sigma_min, self.sigma_max,
                                            self.rho)

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params, step
    key_label, key_w, key_u, key_i, key_z, key_dropout = jax.random.split(rng, 6)
    x0 = batch['x']
    batch_size = x0.shape[0]
    labels = (batch['label'] if self.data_labels else
              denoiser_lib.uniform_labels(key_label, batch_size, self.denoiser.num_classes))
    w = jax.random.uniform(key_w, (batch_size,), minval=self.w_min, maxval=self.w_max)
    round_index = params['round']
    num_steps = self._student_steps(jnp.maximum(round_index, 1))
    sigma_at = self._grid(num_steps)
    i = jax.random.randint(key_i, (batch_size,), 0, num_steps)
    # Stage one: sigma at u ~ U[0, 1) on the grid; stage two: the student's grid points.
    u = jnp.where(round_index == 0, jax.random.uniform(key_u, (batch_size,)), i / num_steps)
    sigma = progressive.grid_sigma(u, self.sigma_min, self.sigma_max, self.rho)
    x = diffusion.add_noise(key_z, x0, sigma)
    teacher_labels = denoiser_lib.conditioning_labels(self.teacher, labels)

    def stage_one_target():
      return denoiser_lib.guided(self.teacher, teacher_params, x, sigma, teacher_labels,
                                  1.0 + w)

    def halving_target():
      previous = lambda x, s: self.student(params['previous'], x, s, w, labels)
      sigma_mid, sigma_next = sigma_at(i + 0.5), sigma_at(i + 1.0)
      x_mid = samplers.ddim_step(x, previous(x, sigma), sigma, sigma_mid)
      x_two = samplers.ddim_step(x_mid, previous(x_mid, sigma_mid), sigma_mid, sigma_next)
      return progressive.student_target(x, x_two, sigma, sigma_next)

    target = jax.lax.stop_gradient(jax.lax.cond(round_index == 0, stage_one_target,
                                                halving_target))
    x0_hat = self.student(params['student'], x, sigma, w, labels, train=True, rng=key_dropout)
    squared = jnp.mean((x0_hat - target) ** 2, axis=tuple(range(1, x0.ndim)))
    loss = jnp.mean(progressive.truncated_snr_weight(sigma) * squared)
    return loss, {'loss': loss, 'round': round_index.astype(jnp.float32)}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps`` DDIM steps of the student at w = ``sample_w`` (0: the round's N_r), for
    ``labels`` or, where the data set has none (gmm2d), labels drawn uniformly."""
    del teacher_params
    key_label, rng = jax.random.split(rng)
    if labels is None:
      labels = denoiser_lib.uniform_labels(key_label, shape[0], self.denoiser.num_classes)
    steps = num_steps if num_steps > 0 else self._student_steps(params['round'])
    sigma_at = self._grid(steps)

    def step(k, x):
      sigma = sigma_at(k)
      x0_hat = self.student(params['student'], x, sigma, self.sample_w, labels)
      return samplers.ddim_step(x, x0_hat, sigma, sigma_at(k + 1))

    return jax.lax.fori_loop(0, steps, step, self.sigma_max * jax.random.normal(rng, shape))
