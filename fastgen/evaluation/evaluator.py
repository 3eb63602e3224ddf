"""The in-loop evaluator: FID of the student's k-step samples and of the teacher, or exact metrics.

Built from the config's ``eval`` section by :func:`make_evaluator`; the trainer calls

  metrics = evaluator.evaluate(sample_fn, rng)            # every eval.every steps
  metrics |= evaluator.evaluate_teacher(teacher_fn, rng)  # computed once, then cached

where ``sample_fn(rng, num, num_steps)`` returns ``num`` samples [num, ...] in [-1, 1] (numpy or
a jax array, possibly sharded over devices and hosts). Pass the same ``rng`` every time: every
evaluation and every k then see the same noise, and differences are the model's. ``num`` is
always ``eval.batch_size`` (one compiled shape); the last batch's surplus rows are dropped.

Keys: ``eval/fid_{k}step`` and ``eval/fid_teacher``; for ``features='exact'``
``eval/fd_{k}step``, ``eval/swd_{k}step`` (:mod:`fastgen.evaluation.exact`) with their noise
floors ``eval/fd_floor``, ``eval/swd_floor`` and ``eval/fd_teacher``, ``eval/swd_teacher``.
``primary_key`` names the number to keep the best checkpoint by (lower is better).

``eval`` keys: ``features`` ('inception' | 'digits' | 'exact'), ``num_samples``,
``batch_size``, ``steps`` (tuple of k), ``reference`` (EDM-format .npz; '' = computed from the
data section: all digits of its split, else ``reference_num_samples`` images),
``reference_num_samples``, ``inception_weights`` (else ``$FASTGEN_INCEPTION_WEIGHTS``),
``num_projections`` and ``seed`` (exact metrics).
"""

import jax
import jax.numpy as jnp
import numpy as np

from fastgen import sharding
from fastgen.evaluation import exact, extractors, frechet, reference


class NonFiniteSamplesError(ValueError):
  """A sampler produced NaN or inf: the model (or its EMA) diverged."""


class Evaluator:
  """Shared loop: ``measure(sample_fn, rng, num_steps) -> {name: value}`` for each k; ``extra``
  holds constants logged with every evaluation."""

  def __init__(self, num_samples: int, batch_size: int, steps=(1, 2, 4)):
    if num_samples < 1 or batch_size < 1 or not steps:
      raise ValueError(f'eval needs num_samples >= 1, batch_size >= 1 and a non-empty steps '
                       f'list; got {num_samples}, {batch_size}, {steps}')
    self.num_samples, self.batch_size, self.steps = num_samples, batch_size, tuple(steps)
    self.extra: dict[str, float] = {}
    self._teacher = None

  def batches(self, sample_fn, rng, num_steps):
    """``(samples, keep)`` for each batch: ``keep`` of its rows count toward ``num_samples``.
    Samples with a NaN or inf are a :class:`NonFiniteSamplesError` (``num_steps`` None: the
    teacher's), never an input to the metrics' linear algebra."""
    for i, start in enumerate(range(0, self.num_samples, self.batch_size)):
      samples = sample_fn(jax.random.fold_in(rng, i), self.batch_size, num_steps)
      keep = min(self.batch_size, self.num_samples - start)
      bad = int(jnp.sum(~jnp.isfinite(samples[:keep])))
      if bad:
        source = "the teacher's" if num_steps is None else f'the {num_steps}-step'
        raise NonFiniteSamplesError(f'{source} samples hold {bad} non-finite value(s) (batch '
                                    f'{i} of eval.batch_size={self.batch_size})')
      yield samples, keep

  def measure(self, sample_fn, rng, num_steps) -> dict[str, float]:
    raise NotImplementedError

  def evaluate(self, sample_fn, rng) -> dict[str, float]:
    """Metrics of ``sample_fn`` for every k in ``steps``."""
    metrics = dict(self.extra)
    for k in self.steps:
      metrics.update({f'eval/{name}_{k}step': value
                      for name, value in self.measure(sample_fn, rng, k).items()})
    return metrics

  def evaluate_teacher(self, sample_fn, rng, num_steps: int | None = None) -> dict[str, float]:
    """Metrics of the teacher's sampler (``num_steps`` passed to ``sample_fn``); computed on the
    first call only."""
    if self._teacher is None:
      self._teacher = {f'eval/{name}_teacher': value
                       for name, value in self.measure(sample_fn, rng, num_steps).items()}
    return self._teacher


class FidEvaluator(Evaluator):
  """FID in an extractor's features against reference ``(mu, sigma)``."""

  def __init__(self, extractor, reference_stats, num_samples: int, batch_size: int,
               steps=(1, 2, 4)):
    super().__init__(num_samples, batch_size, steps)
    mu, sigma = reference_stats
    if len(mu) != extractor.dim:
      raise ValueError(f'reference statistics have feature dimension {len(mu)}, the '
                       f'{extractor.name} features {extractor.dim}: they must come from the same '
                       f'features')
    if num_samples <= extractor.dim:
      raise ValueError(f'eval.num_samples={num_samples} is too few for a full-rank '
                       f'{extractor.dim}x{extractor.dim} feature covariance: use more than '
                       f'{extractor.dim} (FID is normally computed from 10k-50k samples)')
    self.extractor, self.mu, self.sigma = extractor, mu, sigma
    self.primary_key = f'eval/fid_{min(self.steps)}step'

  def stats(self, sample_fn, rng, num_steps) -> frechet.FeatureStats:
    """Feature statistics of ``num_samples`` samples, merged across hosts."""
    stats = frechet.FeatureStats(self.extractor.dim)
    for samples, keep in self.batches(sample_fn, rng, num_steps):
      stats.update(sharding.local_rows(self.extractor.features(samples), keep))
    return frechet.allgather_stats(stats)

  def measure(self, sample_fn, rng, num_steps):
    stats = self.stats(sample_fn, rng, num_steps)
    return {'fid': frechet.frechet_distance(stats.mean, stats.cov, self.mu, self.sigma)}


class ExactEvaluator(Evaluator):
  """Data-space Fréchet distance and sliced Wasserstein against a known mixture."""

  def __init__(self, metrics: exact.ExactMetrics, batch_size: int, steps=(1, 2, 4)):
    super().__init__(metrics.num_samples, batch_size, steps)
    self.metrics = metrics
    self.extra = {f'eval/{name}_floor': value for name, value in metrics.floor.items()}
    self.primary_key = f'eval/swd_{min(self.steps)}step'

  def measure(self, sample_fn, rng, num_steps):
    samples = [sharding.all_rows(batch, keep)
               for batch, keep in self.batches(sample_fn, rng, num_steps)]
    return self.metrics(np.concatenate(samples))


def make_evaluator(eval_config, data_config=None, mixture=None) -> Evaluator:
  """The evaluator of config section ``eval_config``.

  ``data_config``: the data section, for reference statistics when ``eval.reference`` is ''.
  ``mixture``: ``(weights [K], means [K, D], covs [K, D, D])`` of an analytic target, needed
  by ``features='exact'`` (see :func:`fastgen.evaluation.exact.mixture_from_teacher`).
  """
  features = eval_config.features
  num_samples, batch_size = eval_config.num_samples, eval_config.batch_size
  steps = tuple(eval_config.get('steps', (1, 2, 4)))
  if features == 'exact':
    if mixture is None:
      raise ValueError("eval.features='exact' needs an analytic teacher "
                       "(teacher.kind='analytic'); use 'digits' or 'inception' otherwise")
    metrics = exact.ExactMetrics(*mixture, num_samples=num_samples,
                                 num_projections=eval_config.get('num_projections', 512),
                                 seed=eval_config.get('seed', 0))
    return ExactEvaluator(metrics, batch_size, steps)
  extractor = extractors.make_extractor(features, eval_config.get('inception_weights', '')
                                          if features == 'inception' else '')
  if eval_config.get('reference', ''):
    reference_stats = frechet.load_reference(eval_config.reference, extractor.dim)
  elif data_config is not None:
    stats = reference.compute_reference(extractor, reference.image_batches(
        data_config, eval_config.get('reference_num_samples', 0), batch_size))
    reference_stats = stats.mean, stats.cov
  else:
    raise ValueError('FID needs reference statistics: set eval.reference to an EDM-format .npz '
                     'or pass the data section to compute them')
  return FidEvaluator(extractor, reference_stats, num_samples, batch_size, steps)
