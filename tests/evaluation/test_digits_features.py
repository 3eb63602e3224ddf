"""The shipped digits classifier: loads, classifies held-out digits, gives 64-d features."""

import numpy as np
import pytest

from fastgen.data import digits
from fastgen.evaluation import digits_features, frechet


@pytest.fixture(scope='module')
def extractor():
  return digits_features.load_digits_features()


def test_shipped_classifier_accuracy(extractor):
  x, y = digits.load_digits_array('test')
  assert digits_features.accuracy(extractor, x, y) > 0.9


def test_features_separate_digits_from_noise(extractor):
  x, _ = digits.load_digits_array('train')
  features = np.asarray(extractor.features(x))
  assert features.shape == (1500, digits_features.FEATURE_DIM)
  train = frechet.FeatureStats(extractor.dim).update(features)
  test = frechet.FeatureStats(extractor.dim).update(
      extractor.features(digits.load_digits_array('test')[0]))
  noise = frechet.FeatureStats(extractor.dim).update(extractor.features(
      np.random.default_rng(0).uniform(-1, 1, (1500, 8, 8, 1)).astype(np.float32)))
  real_fd = frechet.frechet_distance(train.mean, train.cov, test.mean, test.cov)
  noise_fd = frechet.frechet_distance(train.mean, train.cov, noise.mean, noise.cov)
  assert noise_fd > 20 * real_fd
  assert np.linalg.matrix_rank(train.cov) == extractor.dim


def test_bad_inputs(extractor, tmp_path):
  with pytest.raises(ValueError, match=r'\[N, 8, 8, 1\]'):
    extractor.features(np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(FileNotFoundError, match='python -m fastgen.evaluation.digits_features'):
    digits_features.load_digits_features(str(tmp_path / 'missing.msgpack'))
