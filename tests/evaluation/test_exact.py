"""Exact metrics against a known mixture: moments, noise floor, mode dropping."""

import numpy as np
import pytest

from fastgen.data import toy2d
from fastgen.evaluation import exact
from fastgen.teachers import analytic


@pytest.fixture(scope='module')
def mixture():
  return toy2d.gmm2d_mixture()


@pytest.fixture(scope='module')
def metrics(mixture):
  return exact.ExactMetrics(*mixture, num_samples=4000, num_projections=256)


def test_moments_match_monte_carlo(mixture):
  mean, cov = exact.mixture_moments(*mixture)
  samples = exact.sample_mixture(*mixture, num=200_000, seed=0)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.01)
  np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.01)
  np.testing.assert_allclose(np.sqrt(np.diag(cov)), (1.03, 0.94), atol=0.01)  # toy2d docstring


def test_mixture_from_teacher_params(mixture):
  weights, means, covs = exact.mixture_from_teacher(analytic.mixture_params(*mixture))
  np.testing.assert_allclose(weights, mixture[0], rtol=1e-6)
  np.testing.assert_allclose(means, mixture[1], rtol=1e-6)
  np.testing.assert_allclose(covs, mixture[2], atol=1e-6)


def test_true_samples_sit_at_the_floor(mixture, metrics):
  assert metrics.floor['fd'] < 0.005 and metrics.floor['swd'] < 0.06
  values = metrics(exact.sample_mixture(*mixture, num=4000, seed=99))
  assert values['fd'] < 3 * metrics.floor['fd'] + 1e-3
  assert values['swd'] < 2.5 * metrics.floor['swd']


def test_dropped_modes_are_seen_by_swd(mixture, metrics):
  weights, means, covs = mixture
  half = np.where(np.arange(8) % 2 == 1, weights, 0.0)  # drop 4 of 8 modes (70% of the mass)
  values = metrics(exact.sample_mixture(half, means, covs, num=4000, seed=5))
  assert values['swd'] > 5 * metrics.floor['swd']
  collapsed = metrics(np.tile(means[0], (4000, 1)))  # every sample on one mode centre
  assert collapsed['swd'] > 10 * metrics.floor['swd'] and collapsed['fd'] > 1.0


def test_bad_inputs(mixture, metrics):
  with pytest.raises(ValueError, match='need 4000 samples of dimension 2'):
    metrics(np.zeros((100, 2)))
  with pytest.raises(ValueError, match='too few for a full-rank 2x2'):
    exact.ExactMetrics(*mixture, num_samples=2)
  with pytest.raises(ValueError, match='equal-size'):
    exact.sliced_wasserstein(np.zeros((3, 2)), np.zeros((4, 2)), np.eye(2))
