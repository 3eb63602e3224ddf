"""Fréchet distance against scipy, streaming statistics, EDM reference files."""

import numpy as np
import pytest
import scipy.linalg

from fastgen.evaluation import frechet


def _random_gaussian(rng, dim):
  a = rng.standard_normal((dim, dim))
  return rng.standard_normal(dim), a @ a.T / dim + 0.1 * np.eye(dim)


def _scipy_frechet(mu1, s1, mu2, s2):
  """Independent computation, pytorch-fid style: sqrtm of the non-symmetric product."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize('dim', [2, 16, 64])
def test_matches_scipy(dim):
  rng = np.random.default_rng(dim)
  mu1, s1 = _random_gaussian(rng, dim)
  mu2, s2 = _random_gaussian(rng, dim)
  expected = _scipy_frechet(mu1, s1, mu2, s2)
  assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_closed_form_for_commuting_covariances():
  """Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
  mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
  expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_identical_and_singular_statistics():
  rng = np.random.default_rng(0)
  mu, sigma = _random_gaussian(rng, 32)
  assert frechet.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
  low_rank = rng.standard_normal((32, 4))
  singular = low_rank @ low_rank.T  # rank 4
  d = frechet.frechet_distance(mu, singular, mu, singular)
  assert np.isfinite(d) and d == pytest.approx(0.0, abs=1e-8)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match='one D'):
    frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_merge_equals_full_batch():
  rng = np.random.default_rng(1)
  features = rng.standard_normal((1000, 8)) * 3 + 100  # a large mean stresses cancellation
  streamed = frechet.FeatureStats(8)
  for chunk in np.array_split(features, 7):
    streamed.update(chunk)
  merged = frechet.FeatureStats(8)  # e.g. per-device or per-host statistics pooled
  for part in np.array_split(features, 3):
    merged.merge(frechet.FeatureStats(8).update(part))
  for stats in (streamed, merged):
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(features, rowvar=False), rtol=1e-9)
  assert frechet.allgather_stats(merged) is merged  # one process: identity


def test_too_few_samples_for_full_rank_covariance():
  stats = frechet.FeatureStats(16).update(np.ones((16, 16)))
  with pytest.raises(ValueError, match='too few for a full-rank 16x16'):
    _ = stats.cov
  with pytest.raises(ValueError, match=r'\[N, 16\]'):
    stats.update(np.ones((4, 15)))


def test_reference_round_trip_and_errors(tmp_path):
  rng = np.random.default_rng(2)
  mu, sigma = _random_gaussian(rng, 5)
  path = str(tmp_path / 'ref.npz')
  frechet.save_reference(path, mu, sigma)
  with np.load(path) as data:  # EDM's format: exactly mu and sigma
    assert sorted(data.keys()) == ['mu', 'sigma']
  loaded_mu, loaded_sigma = frechet.load_reference(path, expected_dim=5)
  np.testing.assert_array_equal(loaded_mu, mu)
  np.testing.assert_array_equal(loaded_sigma, sigma)
  with pytest.raises(ValueError, match='feature dimension 5, but the feature extractor gives 2048'):
    frechet.load_reference(path, expected_dim=2048)
  np.savez(tmp_path / 'bad.npz', mean=mu)
  with pytest.raises(ValueError, match='"mu" and "sigma"'):
    frechet.load_reference(str(tmp_path / 'bad.npz'))
  with pytest.raises(FileNotFoundError, match='fastgen.evaluation.reference'):
    frechet.load_reference(str(tmp_path / 'missing.npz'))
