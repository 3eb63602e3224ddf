"""The in-loop evaluator end to end with dummy samplers: FID on digits features, exact metrics."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fastgen.data import digits, toy2d
from fastgen.evaluation import evaluator, exact, frechet


def _eval_config(**kwargs):
  return ml_collections.ConfigDict(dict(dict(
      features='digits', num_samples=1000, batch_size=400, steps=(1, 4), reference=''), **kwargs))


DATA = ml_collections.ConfigDict(dict(name='digits', split='train', batch_size=128))


def _digits_sampler(calls=None):
  """k-step 'samples': real digits plus noise shrinking with k, batch sharded over devices."""
  x = jnp.asarray(digits.load_digits_array('all')[0])
  mesh = jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))

  def sample_fn(rng, num, num_steps):
    if calls is not None:
      calls.append((num, num_steps))
    idx = jax.random.randint(rng, (num,), 0, len(x))
    noisy = jnp.clip(x[idx] + jax.random.normal(rng, (num, 8, 8, 1)) / num_steps, -1, 1)
    return jax.device_put(noisy, NamedSharding(mesh, P('data')))
  return sample_fn


def test_fid_end_to_end():
  calls = []
  ev = evaluator.make_evaluator(_eval_config(), DATA)
  metrics = ev.evaluate(_digits_sampler(calls), jax.random.key(0))
  assert set(metrics) == {'eval/fid_1step', 'eval/fid_4step'}
  assert metrics['eval/fid_1step'] > metrics['eval/fid_4step'] > 0  # less noise, lower FID
  assert calls == [(400, 1)] * 3 + [(400, 4)] * 3  # fixed batch shape, surplus rows dropped
  assert ev.primary_key == 'eval/fid_1step'
  again = ev.evaluate(_digits_sampler(), jax.random.key(0))
  assert again == pytest.approx(metrics)  # same rng, same numbers
  teacher_calls = []
  teacher = ev.evaluate_teacher(_digits_sampler(teacher_calls), jax.random.key(1), 18)
  assert set(teacher) == {'eval/fid_teacher'} and teacher_calls[0] == (400, 18)
  assert ev.evaluate_teacher(_digits_sampler(teacher_calls), jax.random.key(1), 18) == teacher
  assert len(teacher_calls) == 3  # cached


def test_fid_counts_exactly_num_samples():
  ev = evaluator.make_evaluator(_eval_config(), DATA)
  stats = ev.stats(_digits_sampler(), jax.random.key(0), 2)
  assert stats.count == 1000


def test_reference_file_and_its_dimension(tmp_path):
  ev = evaluator.make_evaluator(_eval_config(), DATA)
  path = str(tmp_path / 'digits.npz')
  frechet.save_reference(path, ev.mu, ev.sigma)
  from_file = evaluator.make_evaluator(_eval_config(reference=path))
  np.testing.assert_array_equal(from_file.sigma, ev.sigma)
  frechet.save_reference(path, np.zeros(2048), np.eye(2048))
  with pytest.raises(ValueError, match='dimension 2048, but the feature extractor gives 64'):
    evaluator.make_evaluator(_eval_config(reference=path))
  with pytest.raises(ValueError, match='too few for a full-rank 64x64'):
    evaluator.make_evaluator(_eval_config(num_samples=50), DATA)
  with pytest.raises(ValueError, match='needs reference statistics'):
    evaluator.make_evaluator(_eval_config())


def test_exact_end_to_end():
  mixture = toy2d.gmm2d_mixture()
  ev = evaluator.make_evaluator(
      _eval_config(features='exact', num_samples=2000, batch_size=512, num_projections=128),
      mixture=mixture)
  weights, means, covs = mixture

  def sample_fn(rng, num, num_steps):  # 1 step: 4 of 8 modes dropped; more: the exact mixture
    w = weights if num_steps > 1 else np.where(np.arange(8) % 2 == 1, weights, 0.0)
    seed = int(jax.random.randint(rng, (), 0, 2**30))
    return jnp.asarray(exact.sample_mixture(w, means, covs, num, seed))
  metrics = ev.evaluate(sample_fn, jax.random.key(0))
  assert set(metrics) == {'eval/fd_1step', 'eval/swd_1step', 'eval/fd_4step', 'eval/swd_4step',
                          'eval/fd_floor', 'eval/swd_floor'}
  assert metrics['eval/swd_1step'] > 4 * metrics['eval/swd_floor']
  assert metrics['eval/swd_4step'] < 2.5 * metrics['eval/swd_floor']
  assert ev.primary_key == 'eval/swd_1step'
  assert set(ev.evaluate_teacher(sample_fn, jax.random.key(0), 8)) == {
      'eval/fd_teacher', 'eval/swd_teacher'}
  with pytest.raises(ValueError, match="teacher.kind='analytic'"):
    evaluator.make_evaluator(_eval_config(features='exact'))


def test_unknown_features():
  with pytest.raises(ValueError, match='unknown feature extractor'):
    evaluator.make_evaluator(_eval_config(features='clip'), DATA)


def test_teacher_is_sampled_with_the_configured_guidance():
  """Guided at scale 3, the class-conditional mixture's samples shrink toward each class's mode
  and move far from the mixture (FD 0.119 against 0.0086 unguided, whose own gap is the uniform
  labels against the mixture's weights; bound: 5x); an unconditional teacher cannot be guided."""
  from fastgen import evaluate, experiment as experiment_lib, step as step_lib
  from tests.tiny_config import get_config as tiny_config
  config = tiny_config()
  config.data.conditional = True
  config.teacher.update(kind='analytic', mixture='gmm2d', conditional=True)
  config.eval.update(features='exact', num_samples=4096, batch_size=4096, steps=(1,),
                     teacher_steps=18)
  experiment = experiment_lib.Experiment(config)
  params = step_lib.sampling_params(experiment.initial_state())
  fd = {}
  for scale in (1.0, 3.0):
    config.eval.guidance_scale = scale
    fd[scale] = evaluate.RunEvaluator(experiment).evaluate(params)['eval/fd_teacher']
  assert fd[3.0] > 5 * fd[1.0], fd
  config.teacher.conditional = False
  config.data.conditional = False
  with pytest.raises(ValueError, match='eval.guidance_scale=3.0 .* class-conditional teacher'):
    evaluate.RunEvaluator(experiment_lib.Experiment(config))
