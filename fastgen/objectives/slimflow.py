"""SlimFlow: a one-step student smaller than its teacher, by Annealing Reflow then Flow-Guided
Distillation (Zhu, Liu & Liu 2024, "SlimFlow: Training Smaller One-Step Diffusion Models with
Rectified Flow", ECCV 2024, §4.1 and §4.2; official code github.com/yuanzhi-zhu/SlimFlow,
``reflow/reflow.py``), in fastgen's flow convention x_t = (1 - t) x0 + t z.

One run, two stages switched by the step counter. Stage 1 (steps < ``reflow_steps``): reflow on
the teacher's couplings with the noise re-paired as z_beta = sqrt(1 - beta^2) z + beta eps, beta
annealed from 1 to 0 (§4.1), which gives a small 2-flow. Stage 2: ``set_frozen`` freezes the
2-flow's EMA into ``'two_flow'`` and the student learns one step G(z) = T z - T v_theta(T z, T)
from (§4.2)

  L = m(G(z), x0) + w m(G(z'), x0_guide(z')),

(z, x0) the distillation pairs and x0_guide(z') the 2-flow followed from the point
(1 - s) sg(G(z')) + s z' of the student's own straight path for fresh noise z' (official
``teacher_loss_new``, s ~ U(0.2, 0.8)). ``distill_pairs``: 'couplings' (the default) the batch's
teacher couplings, as the official distillation command reads its stored pairs
(``--config.data.reflow_data_root``, the same pairs as Annealing Reflow; ``get_data_pair`` and
``train_step`` of ``reflow/reflow.py``); 'two_flow' pairs (z, Phi_2(z)) of fresh noise through
``two_flow_steps`` Euler steps of the frozen 2-flow, the map the one step distils, which needs no
stored pairs at the price of ``two_flow_steps`` 2-flow evaluations per step. Group ``'student'``;
frozen ``'two_flow'`` and ``'stage'``.

Differences from the official code: no horizontal flip of the coupling pairs; LPIPS only with
``lpips_weights`` (the default metric is the official default, 'l2'; ``lpips_pooling='max'`` is
the official ``lpips.LPIPS(net='vgg')``).

Both stages in full: docs/rules/rectified_flows.md.
"""

import dataclasses

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.objectives import instaflow, reflow

ANNEALING = ('exp', 'cos', 'linear')
DISTILL_PAIRS = ('couplings', 'two_flow')


def annealing_beta(step, annealing_steps: int, schedule: str):
  """beta(k) from 1 to 0 (SlimFlow §4.1; official ``randomness_schedule``): 'exp' exp(-k/K),
  'cos' (1 + cos(pi min(k/K, 1))) / 2, 'linear' 1 - min(k/K, 1)."""
  progress = jnp.asarray(step, jnp.float32) / max(annealing_steps, 1)
  if schedule == 'exp':
    return jnp.exp(-progress)
  if schedule == 'cos':
    return 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(progress, 1.0)))
  if schedule == 'linear':
    return 1.0 - jnp.minimum(progress, 1.0)
  raise ValueError(f'unknown objective.annealing {schedule!r}; known: {", ".join(ANNEALING)}')


def anneal_noise(noise, eps, beta):
  """z_beta = sqrt(1 - beta^2) z + beta eps: standard normal for every beta in [0, 1]."""
  return jnp.sqrt(1.0 - beta**2) * noise + beta * eps


@dataclasses.dataclass(frozen=True)
class SlimFlow(reflow.Reflow):
  """Annealing Reflow then Flow-Guided Distillation; group 'student', frozen 'two_flow', 'stage'.
  The student is ``denoiser`` (small); the coupling, metric and time options are Reflow's."""
  metric: str = 'l2'
  lpips_pooling: str = 'max'    # the official lpips.LPIPS(net='vgg')
  init_from_teacher: bool = False  # True only for a teacher of the student's own architecture
  time_distribution: str = 'uniform'
  reflow_steps: int = 2000      # stage 1 length
  annealing: str = 'linear'     # the official command's x0_randomness=warmup_300000
  annealing_steps: int = 500    # K of beta(k)
  distill_pairs: str = 'couplings'
  two_flow_steps: int = 8       # distill_pairs='two_flow': Euler steps of the 2-flow per pair
  guidance_weight: float = 1.0
  guidance_steps: int = 1       # Euler steps of the 2-flow from the student's path to t = 0
  guidance_s_min: float = 0.2
  guidance_s_max: float = 0.8

  def __post_init__(self):
    super().__post_init__()
    reflow.check_option('annealing', self.annealing, ANNEALING)
    reflow.check_option('distill_pairs', self.distill_pairs, DISTILL_PAIRS)
    if not 0.0 <= self.guidance_s_min <= self.guidance_s_max <= 1.0:
      raise ValueError(f'objective.guidance_s_min={self.guidance_s_min} and guidance_s_max='
                       f'{self.guidance_s_max} must satisfy 0 <= s_min <= s_max <= 1')
    if min(self.two_flow_steps, self.guidance_steps) < 1:
      raise ValueError('objective.two_flow_steps and objective.guidance_steps must be >= 1')

  def init(self, rng, batch, teacher_params):
    params = super().init(rng, batch, teacher_params)
    return {**params, 'two_flow': jax.tree.map(jnp.copy, params['student']),
            'stage': jnp.zeros((), jnp.int32)}

  def set_frozen(self, params, ema_params, step):
    """At step ``reflow_steps``: two_flow <- EMA of the student, stage <- 1."""
    stage = (step >= self.reflow_steps).astype(jnp.int32)
    two_flow = jax.lax.cond(stage != params['stage'], lambda: ema_params['student'],
                            lambda: params['two_flow'])
    return {**params, 'two_flow': two_flow, 'stage': stage}

  def _annealing_reflow(self, params, teacher_params, batch, rng, step):
    key_pair, key_eps, key_t, key_dropout = jax.random.split(rng, 4)
    noise, x0, labels = reflow.coupling_batch(self, teacher_params, batch, key_pair)
    beta = annealing_beta(step, self.annealing_steps, self.annealing)
    noise = anneal_noise(noise, jax.random.normal(key_eps, noise.shape), beta)
    loss = self._reflow_loss(params, noise, x0, labels, key_t, key_dropout)
    return loss, {'reflow_loss': loss, 'distill_loss': jnp.zeros(()),
                  'guidance_loss': jnp.zeros(()), 'beta': beta}

  def _two_flow(self, params, labels):
    """The frozen 2-flow's velocity (x, t) -> v_2(x, t)."""
    return lambda x, t: self.denoiser.velocity(params['two_flow'], x, t, labels)

  def _distillation_pairs(self, params, teacher_params, batch, rng):
    """``(z, x0, labels)``: the batch's couplings, or fresh noise through the 2-flow."""
    if self.distill_pairs == 'couplings':
      return reflow.coupling_batch(self, teacher_params, batch, rng)
    key_z, key_label = jax.random.split(rng)
    shape = batch['x'].shape
    labels = denoiser_lib.uniform_labels(key_label, shape[0], self.denoiser.num_classes)
    noise = jax.random.normal(key_z, shape)
    return noise, jax.lax.stop_gradient(samplers.flow_euler(
        self._two_flow(params, labels), noise, self.two_flow_steps, self.t_max)), labels

  def _flow_guided_distillation(self, params, teacher_params, batch, rng):
    key_pair, key_z, key_s, key_dropout, key_dropout_guide = jax.random.split(rng, 5)
    noise, x0, labels = self._distillation_pairs(params, teacher_params, batch, key_pair)
    student = lambda key: lambda x, t: self.denoiser.velocity(
        params['student'], x, t, labels, train=True, rng=key)
    x0_hat = instaflow.one_step(student(key_dropout), noise, self.t_max)
    # Flow guidance on fresh noise z' (official teacher_loss_new: torch.randn_like).
    guide_noise = jax.random.normal(key_z, noise.shape)
    x0_hat_guided = instaflow.one_step(student(key_dropout_guide), guide_noise, self.t_max)
    two_flow = self._two_flow(params, labels)
    s = jax.random.uniform(key_s, noise.shape[:1], minval=self.guidance_s_min,
                           maxval=self.guidance_s_max)
    x_s = diffusion.flow_interpolate(jax.lax.stop_gradient(x0_hat_guided), guide_noise, s)
    x0_guide = x_s
    for i in range(self.guidance_steps):  # Euler from s to 0 in guidance_steps equal steps
      t = s * (1.0 - i / self.guidance_steps)
      x0_guide = x0_guide - diffusion.expand_like(s / self.guidance_steps, x_s) * two_flow(
          x0_guide, t)
    x0_guide = jax.lax.stop_gradient(x0_guide)
    distill = jnp.mean(reflow.endpoint_loss(self.metric, params, x0_hat, x0,
                                            self.lpips_resolution, self.lpips_pooling))
    guidance = jnp.mean(reflow.endpoint_loss(self.metric, params, x0_hat_guided, x0_guide,
                                             self.lpips_resolution, self.lpips_pooling))
    loss = distill + self.guidance_weight * guidance
    return loss, {'reflow_loss': jnp.zeros(()), 'distill_loss': distill,
                  'guidance_loss': guidance, 'beta': jnp.zeros(())}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del group, ema_params
    loss, metrics = jax.lax.cond(
        params['stage'] == 0,
        lambda: self._annealing_reflow(params, teacher_params, batch, rng, step),
        lambda: self._flow_guided_distillation(params, teacher_params, batch, rng))
    return loss, {'loss': loss, 'stage': params['stage'].astype(jnp.float32), **metrics}
